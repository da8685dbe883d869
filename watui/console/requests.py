"""Requests that screens post and the app handles (``@on``): screens ask, the app decides.

A screen never calls the app: it posts one of these, which bubbles up to the app. The app
checks, asks (confirm), runs the service call in the background and tells the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from textual.message import Message

from watui.console.verbs import Verb
from watui.models import SessionCreate

if TYPE_CHECKING:
    from watui.screens.new_session import NewSessionScreen


class LogKind(StrEnum):
    EVENTS = "events"
    MESSAGES = "messages"


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@dataclass
class OpenSession(Message):
    """``enter``: the QR code (or pairing code) while linking, the details otherwise."""

    session_id: str


@dataclass
class RunVerb(Message):
    """Start, stop, restart, log out or delete these sessions (one confirm for several)."""

    session_ids: tuple[str, ...]
    verb: Verb
    hidden: frozenset[str] = frozenset()
    """Those of ``session_ids`` the filter hides (marked, then filtered out of view): the
    question before acting says how many, so nobody acts on rows they cannot see unawares."""


@dataclass
class StopAll(Message):
    """Stop every running session (asks first)."""


@dataclass
class NewSession(Message):
    """Open the new-session form."""


@dataclass
class CreateSession(Message):
    """The form's contents: create it; errors go back to the ``form``, which stays open."""

    spec: SessionCreate
    form: NewSessionScreen


@dataclass
class LinkByPhone(Message):
    """Ask for a phone number and show a pairing code for the session."""

    session_id: str


@dataclass
class ComposeMessage(Message):
    """Open the message box for a connected session."""

    session_id: str


@dataclass
class Simulate(Message):
    """Demo only: play the phone (``scan``, ``disconnect``, ...)."""

    session_id: str
    action: str


@dataclass
class OpenLog(Message):
    """The full event history (of one session, or all with ``None``) or a session's messages."""

    session_id: str | None
    kind: LogKind = LogKind.EVENTS


@dataclass
class CopyFrom(Message):
    """Offer the session's id, phone number and JID to copy to the clipboard."""

    session_id: str


@dataclass
class ShowHelp(Message):
    """Every key and what each status means."""


@dataclass
class GoToSession(Message):
    """Select this session in the table (the palette's "Go to")."""

    session_id: str


@dataclass
class ShowPairCode(Message):
    """A pairing code was issued for a session whose QR screen is open: show the code instead."""

    session_id: str
    code: str | None
    expires_at: datetime | None


@dataclass
class ExportSessions(Message):
    """Save the sessions table as shown (filter and sort applied) to a new file."""

    format: ExportFormat
