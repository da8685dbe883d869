"""The console's link to a running ``watui serve``: :class:`RemoteService` speaks the
:class:`watui.service.SessionService` protocol over the HTTP API and its SSE stream.

No Textual here: this is a service, like the manager's; the console only constructs it.
"""

from watui.remote.bounded import Limits
from watui.remote.errors import BadResponse, RemoteError, ResponseTooLarge, ServerUnreachable
from watui.remote.link import LinkMonitor, LinkState, LinkStatus
from watui.remote.service import RemoteService
from watui.remote.subscription import Backoff, RemoteSubscription

__all__ = [
    "Backoff",
    "BadResponse",
    "Limits",
    "LinkMonitor",
    "LinkState",
    "LinkStatus",
    "RemoteError",
    "RemoteService",
    "RemoteSubscription",
    "ResponseTooLarge",
    "ServerUnreachable",
]
