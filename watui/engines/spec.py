"""Which engine the settings describe, and how to build it in this process.

An :class:`EngineSpec` is everything needed to build an inline engine; it is plain JSON so an
engine host process (:mod:`watui.engines.hosts`) can build the very same engine on its side.
Where the engine runs (inline or in hosts) is :mod:`watui.engines.factory`'s choice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watui.clock import Clock
    from watui.config import Settings
    from watui.engines.base import Engine


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """An engine kind (``neonize`` or ``simulated``) and its constructor's keyword options."""

    engine: str
    options: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> EngineSpec:
        data = json.loads(text)
        return cls(engine=str(data["engine"]), options=dict(data.get("options") or {}))


def spec_for(settings: Settings) -> EngineSpec:
    """The inline engine the settings describe.

    In cluster mode (``settings.database_url``) the engine keeps its auth state in that
    PostgreSQL database (:mod:`watui.engines.auth`); the URL is part of the spec, so engine
    host processes get it too.
    """
    cluster = {"database_url": settings.database_url} if settings.database_url else {}
    if settings.engine == "simulated":
        return EngineSpec(
            "simulated",
            {
                "qr_first_ttl": settings.qr_first_ttl,
                "qr_next_ttl": settings.qr_next_ttl,
                "codes_per_attempt": settings.qr_codes_per_attempt,
                "connect_latency": 0.3,
                "link_latency": 1.0,
                **cluster,
            },
        )
    return EngineSpec("neonize", cluster)


def build_inline(spec: EngineSpec, clock: Clock | None = None) -> Engine:
    """The engine itself, in this process."""
    if spec.engine == "simulated":
        from watui.engines.simulated import SimulatedEngine

        return SimulatedEngine(clock=clock, **spec.options)
    if spec.engine == "neonize":
        from watui.engines.neonize import NeonizeEngine

        return NeonizeEngine(**spec.options)
    raise ValueError(f"unknown engine {spec.engine!r}")
