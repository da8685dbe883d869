"""The session state machine: statuses, triggers and the transition table, as data.

Everything here is pure. The manager applies it; the docs' state diagram and the tests read
``TRANSITIONS`` directly, so the table is the single source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from watui.errors import InvalidTransition


class Status(StrEnum):
    STOPPED = "stopped"
    INITIALIZING = "initializing"
    QR_READY = "qr_ready"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


class Trigger(StrEnum):
    START = "start"
    QR_CODE = "qr_code"
    PAIR_CODE = "pair_code"
    PAIR_SUCCESS = "pair_success"
    CONNECTED = "connected"
    CONNECTION_LOST = "connection_lost"
    RECONNECT_FAILED = "reconnect_failed"
    RECONNECT_EXHAUSTED = "reconnect_exhausted"
    LOGGED_OUT = "logged_out"
    QR_EXHAUSTED = "qr_exhausted"
    PAIRING_TIMEOUT = "pairing_timeout"
    ENGINE_ERROR = "engine_error"
    SHUTDOWN = "shutdown"
    STOP = "stop"
    LOGOUT = "logout"
    DELETE = "delete"


class EventType(StrEnum):
    STATUS = "status"
    QR = "qr"
    PAIR_CODE = "pair_code"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    MESSAGE = "message"
    MESSAGE_STATUS = "message_status"
    DELETED = "deleted"


S = Status
RUNNING: frozenset[Status] = frozenset({S.INITIALIZING, S.QR_READY, S.CONNECTING, S.CONNECTED})
"""Statuses in which the session's engine is up."""
STARTABLE: frozenset[Status] = frozenset({S.STOPPED, S.DISCONNECTED, S.FAILED})
ALL: frozenset[Status] = frozenset(Status)
DELETED = None
"""``transition`` returns ``None`` as the new status for a deleted session."""


def wants_node(status: Status, autostart: bool) -> bool:
    """Whether a session in this state should be running on some node of a cluster: it runs,
    or it is disconnected and set to come back by itself (``autostart``). A node whose lease on
    such a session lapsed (it died) leaves it for another node to claim."""
    return status in RUNNING or (status is Status.DISCONNECTED and autostart)


@dataclass(frozen=True, slots=True)
class Rule:
    trigger: Trigger
    sources: frozenset[Status]
    target: Status | None
    events: tuple[EventType, ...]
    note: str = ""


# The table of DESIGN.md, plus the rows it implies (see docs/state-machine.md):
# reconnect attempts keep a session `disconnected` until it connects or gives up, and a
# shutdown parks running sessions as `disconnected` so start-up can resume them.
RULES: tuple[Rule, ...] = (
    Rule(Trigger.START, STARTABLE, S.INITIALIZING, (EventType.STATUS,), "also create with start=true"),
    Rule(Trigger.QR_CODE, frozenset({S.INITIALIZING, S.QR_READY}), S.QR_READY, (EventType.STATUS, EventType.QR),
         "generation += 1, expires_at set"),
    Rule(Trigger.PAIR_CODE, frozenset({S.INITIALIZING, S.QR_READY}), S.QR_READY,
         (EventType.STATUS, EventType.PAIR_CODE), "link by phone number instead of QR"),
    Rule(Trigger.PAIR_SUCCESS, frozenset({S.QR_READY}), S.CONNECTING, (EventType.STATUS,), "code scanned"),
    Rule(Trigger.CONNECTED, frozenset({S.INITIALIZING, S.QR_READY, S.CONNECTING, S.DISCONNECTED}), S.CONNECTED,
         (EventType.STATUS, EventType.CONNECTED), "phone number, push name; QR cleared"),
    Rule(Trigger.CONNECTION_LOST, frozenset({S.CONNECTED, S.CONNECTING}), S.DISCONNECTED,
         (EventType.STATUS, EventType.DISCONNECTED), "auto-reconnect if the settings say so"),
    Rule(Trigger.RECONNECT_FAILED, frozenset({S.DISCONNECTED}), S.DISCONNECTED, (EventType.DISCONNECTED,),
         "a reconnect attempt failed; the next one is scheduled"),
    Rule(Trigger.RECONNECT_EXHAUSTED, frozenset({S.DISCONNECTED}), S.FAILED, (EventType.STATUS, EventType.ERROR),
         "reason reconnect_exhausted"),
    Rule(Trigger.LOGGED_OUT, RUNNING | {S.DISCONNECTED}, S.DISCONNECTED, (EventType.STATUS, EventType.DISCONNECTED),
         "from the phone; reason logged_out; auth cleared; no auto-reconnect"),
    Rule(Trigger.QR_EXHAUSTED, frozenset({S.QR_READY}), S.FAILED, (EventType.STATUS, EventType.ERROR),
         "reason qr_timeout (pair_code_timeout for a pairing code)"),
    Rule(Trigger.PAIRING_TIMEOUT, frozenset({S.INITIALIZING, S.QR_READY, S.CONNECTING}), S.FAILED,
         (EventType.STATUS, EventType.ERROR), "reason pairing_timeout"),
    Rule(Trigger.ENGINE_ERROR, frozenset({S.INITIALIZING, S.QR_READY, S.CONNECTING}), S.FAILED,
         (EventType.STATUS, EventType.ERROR), "reason carries the engine's message"),
    Rule(Trigger.SHUTDOWN, RUNNING, S.DISCONNECTED, (EventType.STATUS,),
         "watui stopped while the session ran; start-up resumes it"),
    Rule(Trigger.STOP, RUNNING | {S.DISCONNECTED}, S.STOPPED, (EventType.STATUS,), ""),
    Rule(Trigger.LOGOUT, frozenset({S.CONNECTED, S.DISCONNECTED}), S.DISCONNECTED, (EventType.STATUS,),
         "reason logged_out; auth cleared"),
    Rule(Trigger.DELETE, ALL, DELETED, (EventType.DELETED,), "logs out first if linked; auth files removed"),
)

TRANSITIONS: dict[tuple[Status, Trigger], Rule] = {
    (source, rule.trigger): rule for rule in RULES for source in rule.sources
}


@dataclass(frozen=True, slots=True)
class Transition:
    source: Status
    target: Status | None
    trigger: Trigger
    events: tuple[EventType, ...]

    @property
    def changes_status(self) -> bool:
        return self.target is not None and self.target != self.source


def transition(state: Status, trigger: Trigger) -> Transition:
    """Apply ``trigger`` to ``state``; raise :class:`InvalidTransition` if the table forbids it.

    The ``status`` event is only listed when the status actually changes.
    """
    rule = TRANSITIONS.get((Status(state), Trigger(trigger)))
    if rule is None:
        raise InvalidTransition(str(state), str(trigger))
    target = rule.target
    events = tuple(
        e for e in rule.events if e is not EventType.STATUS or (target is not None and target != state)
    )
    return Transition(Status(state), target, Trigger(trigger), events)


def reachable(start: Status = Status.STOPPED) -> set[Status]:
    """Every status the table can reach from ``start``."""
    seen = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for (source, _), rule in TRANSITIONS.items():
            if source == current and rule.target is not None and rule.target not in seen:
                seen.add(rule.target)
                frontier.append(rule.target)
    return seen
