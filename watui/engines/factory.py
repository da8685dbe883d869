"""Which engine a watui process runs: the settings choose the kind (:mod:`.spec`) and where
it runs, inline or in engine host processes (:mod:`.hosts`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from watui.engines.hosts import HostedEngine
from watui.engines.spec import build_inline, spec_for

if TYPE_CHECKING:
    from watui.clock import Clock
    from watui.config import Settings
    from watui.engines.base import Engine


def build_engine(settings: Settings, clock: Clock) -> Engine:
    """The engine for a watui process: inline, or in engine host processes (``isolation``)."""
    spec = spec_for(settings)
    if settings.isolation == "process":
        return HostedEngine(
            spec,
            sessions_per_host=settings.sessions_per_host,
            recycle_connects=settings.host_recycle_connects,
        )
    return build_inline(spec, clock)
