"""The session manager, split by concern (a newcomer's map is in session_manager.py).

``from watui.manager import SessionManager, ScopedService`` is all most code needs.
"""

from watui.manager.commands import PAIR_CODE_WAIT, new_webhook_secret
from watui.manager.runtime import ENGINE_CALL_TIMEOUT, Runtime, TimerKind
from watui.manager.scoped import ScopedService
from watui.manager.session_manager import SessionManager

__all__ = [
    "ENGINE_CALL_TIMEOUT",
    "PAIR_CODE_WAIT",
    "Runtime",
    "ScopedService",
    "SessionManager",
    "TimerKind",
    "new_webhook_secret",
]
