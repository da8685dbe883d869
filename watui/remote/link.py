"""The state of the console's link to a server, for the header and for resyncs.

The event stream reports here: ``connected`` once the server answered, ``reconnecting``
(with the reason and the attempt number) while it is away. ``resyncs`` counts the times the
stream could not resume where it left off (the server no longer has those events, or its log
is not the one the console followed): the console then re-reads every session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

log = logging.getLogger(__name__)


class LinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True)
class LinkStatus:
    url: str
    state: LinkState = LinkState.CONNECTING
    detail: str = ""
    """Why the link is down, in the server's or the network's words."""
    attempt: int = 0
    """Reconnect attempts since the link was last up."""
    resyncs: int = 0


Listener = Callable[[LinkStatus], None]


class LinkMonitor:
    """Holds the current :class:`LinkStatus` and tells listeners of every change."""

    def __init__(self, url: str) -> None:
        self.status = LinkStatus(url)
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call ``listener(status)`` now and on every change."""
        self._listeners.append(listener)
        listener(self.status)

    def _set(self, status: LinkStatus) -> None:
        if status == self.status:
            return
        self.status = status
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:  # a listener's bug must not stop the stream
                log.exception("link listener failed")

    def connected(self) -> None:
        self._set(replace(self.status, state=LinkState.CONNECTED, detail="", attempt=0))

    def reconnecting(self, detail: str) -> None:
        self._set(replace(self.status, state=LinkState.RECONNECTING, detail=detail,
                          attempt=self.status.attempt + 1))

    def resynced(self) -> None:
        self._set(replace(self.status, resyncs=self.status.resyncs + 1))
