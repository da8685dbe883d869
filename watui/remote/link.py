"""The state of the console's link to a server, for the header, for resyncs, and for the
stale view.

The event stream reports here: ``connected`` once the server answered, ``reconnecting``
(with the reason and the attempt number) while it is away. A request that cannot reach the
server, or gets an answer it cannot use, marks the link down as well (``unreachable``), and
one that gets through again while the stream is up brings it back (``reachable``).

While the link is down, what the console shows is only as good as the moment it went down:
``as_of`` says when, and :attr:`LinkStatus.stale` tells the console to mark its view and to
refuse actions. ``resyncs`` counts the times the stream could not resume where it left off
(the server no longer has those events, or its log is not the one the console followed): the
console then re-reads every session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from watui.clock import RealClock

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
    as_of: datetime | None = None
    """While the link is down: when it went down, so the last moment the view was current."""

    @property
    def stale(self) -> bool:
        """The server is unreachable: what is on screen may no longer be true."""
        return self.state is LinkState.RECONNECTING


Listener = Callable[[LinkStatus], None]


class LinkMonitor:
    """Holds the current :class:`LinkStatus` and tells listeners of every change."""

    def __init__(self, url: str, now: Callable[[], datetime] | None = None) -> None:
        self.status = LinkStatus(url)
        self._now = now or RealClock().now
        self._listeners: list[Listener] = []
        self._stream_up = False
        self._requests_fail = False

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

    def _down(self, detail: str, attempt: int) -> None:
        as_of = self.status.as_of or self._now()
        self._set(replace(self.status, state=LinkState.RECONNECTING, detail=detail, attempt=attempt, as_of=as_of))

    # -- from the event stream -----------------------------------------------------------

    def connected(self) -> None:
        self._stream_up, self._requests_fail = True, False
        self._set(replace(self.status, state=LinkState.CONNECTED, detail="", attempt=0, as_of=None))

    def reconnecting(self, detail: str) -> None:
        self._stream_up = False
        self._down(detail, self.status.attempt + 1)

    def resynced(self) -> None:
        self._set(replace(self.status, resyncs=self.status.resyncs + 1))

    # -- from requests -------------------------------------------------------------------

    def unreachable(self, detail: str) -> None:
        """A request found no server, or an answer it could not use."""
        self._requests_fail = True
        if not self.status.stale:
            self._down(detail, self.status.attempt)

    def reachable(self) -> None:
        """A request got through: if only requests had failed (the stream stayed up), the
        link is up again."""
        if self._requests_fail and self._stream_up:
            self.connected()
