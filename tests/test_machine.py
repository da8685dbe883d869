"""The transition table, checked pair by pair."""

from __future__ import annotations

import itertools

import pytest

from watui.errors import InvalidTransition
from watui.machine import (
    RULES,
    RUNNING,
    TRANSITIONS,
    EventType,
    Status,
    Trigger,
    reachable,
    transition,
)

S = Status
T = Trigger

# Written out by hand from DESIGN.md (plus the documented additions), independently of RULES.
EXPECTED: dict[tuple[Status, Trigger], Status | None] = {}
for s in (S.STOPPED, S.DISCONNECTED, S.FAILED):
    EXPECTED[(s, T.START)] = S.INITIALIZING
for s in (S.INITIALIZING, S.QR_READY):
    EXPECTED[(s, T.QR_CODE)] = S.QR_READY
    EXPECTED[(s, T.PAIR_CODE)] = S.QR_READY
EXPECTED[(S.QR_READY, T.PAIR_SUCCESS)] = S.CONNECTING
for s in (S.INITIALIZING, S.QR_READY, S.CONNECTING, S.DISCONNECTED):
    EXPECTED[(s, T.CONNECTED)] = S.CONNECTED
for s in (S.CONNECTED, S.CONNECTING):
    EXPECTED[(s, T.CONNECTION_LOST)] = S.DISCONNECTED
EXPECTED[(S.DISCONNECTED, T.RECONNECT_FAILED)] = S.DISCONNECTED
EXPECTED[(S.DISCONNECTED, T.RECONNECT_EXHAUSTED)] = S.FAILED
for s in (S.INITIALIZING, S.QR_READY, S.CONNECTING, S.CONNECTED, S.DISCONNECTED):
    EXPECTED[(s, T.LOGGED_OUT)] = S.DISCONNECTED
EXPECTED[(S.QR_READY, T.QR_EXHAUSTED)] = S.FAILED
for s in (S.INITIALIZING, S.QR_READY, S.CONNECTING):
    EXPECTED[(s, T.PAIRING_TIMEOUT)] = S.FAILED
    EXPECTED[(s, T.ENGINE_ERROR)] = S.FAILED
for s in (S.INITIALIZING, S.QR_READY, S.CONNECTING, S.CONNECTED):
    EXPECTED[(s, T.SHUTDOWN)] = S.DISCONNECTED
for s in (S.INITIALIZING, S.QR_READY, S.CONNECTING, S.CONNECTED, S.DISCONNECTED):
    EXPECTED[(s, T.STOP)] = S.STOPPED
for s in (S.CONNECTED, S.DISCONNECTED):
    EXPECTED[(s, T.LOGOUT)] = S.DISCONNECTED
for s in Status:
    EXPECTED[(s, T.DELETE)] = None


@pytest.mark.parametrize(("status", "trigger"), list(itertools.product(Status, Trigger)))
def test_every_pair_matches_the_table(status: Status, trigger: Trigger) -> None:
    if (status, trigger) in EXPECTED:
        result = transition(status, trigger)
        assert result.target == EXPECTED[(status, trigger)]
        assert result.source is status and result.trigger is trigger
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(status, trigger)
        # The error names the status and the trigger, for the console and the API.
        assert info.value.details == {"status": status.value, "trigger": trigger.value}
        assert status.value in info.value.message
        assert info.value.code == "INVALID_TRANSITION" and info.value.status == 409


def test_table_has_no_rows_beyond_the_expected_ones() -> None:
    assert set(TRANSITIONS) == set(EXPECTED)


def test_status_event_only_when_the_status_changes() -> None:
    assert transition(S.QR_READY, T.QR_CODE).events == (EventType.QR,)
    assert transition(S.INITIALIZING, T.QR_CODE).events == (EventType.STATUS, EventType.QR)
    assert transition(S.DISCONNECTED, T.RECONNECT_FAILED).events == (EventType.DISCONNECTED,)
    assert transition(S.CONNECTED, T.DELETE).events == (EventType.DELETED,)


def test_every_status_is_reachable_from_stopped() -> None:
    assert reachable(S.STOPPED) == set(Status)


def test_running_statuses_can_always_be_stopped_and_deleted() -> None:
    for status in RUNNING:
        assert transition(status, T.STOP).target is S.STOPPED
        assert transition(status, T.DELETE).target is None


def test_each_rule_has_a_note_or_is_plain() -> None:
    # The docs table is generated from RULES: every rule lists at least one event.
    assert all(rule.events for rule in RULES)
