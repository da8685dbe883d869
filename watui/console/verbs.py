"""The console's verbs on a session: what each is called, whether it asks first, and when it
cannot run at all.

The refusal is read from the state machine's table before anything is asked, so ``l`` on a
stopped session says at once why it cannot log out instead of asking "Log out?" first; the
service still has the last word (a session may change between the check and the call).
"""

from __future__ import annotations

from enum import StrEnum

from watui.machine import STARTABLE, TRANSITIONS, Status, Trigger
from watui.models import Session


class Verb(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    LOGOUT = "logout"
    DELETE = "delete"
    RESTART_OR_START = "restart_or_start"
    """The QR screen's retry: restart a running session, start a stopped one."""

    @property
    def label(self) -> str:
        """``Log out``: the verb as a button or a toast title says it."""
        return _LABEL[self]

    @property
    def done(self) -> str:
        """``Logged out``: the toast after it worked."""
        return _DONE[self]

    @property
    def ongoing(self) -> str:
        """``logging out``: what a session is undergoing while the call runs."""
        return _ONGOING[self]

    @property
    def asks_first(self) -> bool:
        """Destructive for one session: a confirm before it runs."""
        return self in (Verb.LOGOUT, Verb.DELETE)


_LABEL = {Verb.START: "Start", Verb.STOP: "Stop", Verb.RESTART: "Restart", Verb.LOGOUT: "Log out",
          Verb.DELETE: "Delete", Verb.RESTART_OR_START: "Start"}
_DONE = {Verb.START: "Started", Verb.STOP: "Stopped", Verb.RESTART: "Restarted", Verb.LOGOUT: "Logged out",
         Verb.DELETE: "Deleted", Verb.RESTART_OR_START: "Started again"}
_ONGOING = {Verb.START: "starting", Verb.STOP: "stopping", Verb.RESTART: "restarting",
            Verb.LOGOUT: "logging out", Verb.DELETE: "being deleted", Verb.RESTART_OR_START: "starting"}

_TRIGGER = {Verb.START: Trigger.START, Verb.STOP: Trigger.STOP, Verb.LOGOUT: Trigger.LOGOUT}


def refusal(session: Session, verb: Verb) -> str | None:
    """Why ``verb`` cannot run on ``session`` as it is now, in words; ``None`` if it can."""
    status = session.status
    shown = status.value.replace("_", " ")
    if verb == Verb.START and status not in STARTABLE:
        return f"already running ({shown})"
    if verb == Verb.STOP and (status, Trigger.STOP) not in TRANSITIONS:
        return f"not running ({shown})"
    if verb == Verb.LOGOUT:
        if status == Status.DISCONNECTED and session.reason == "logged_out":
            return "already logged out"
        if not session.linked or (status, Trigger.LOGOUT) not in TRANSITIONS:
            return f"not linked to a phone ({shown})" if not session.linked else f"cannot log out while {shown}"
    trigger = _TRIGGER.get(verb)
    if trigger is not None and (status, trigger) not in TRANSITIONS:
        return f"cannot {verb.label.lower()} while {shown}"
    return None
