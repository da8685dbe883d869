"""Textual messages the app posts: one per bus event, one per coalesced state refresh."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from watui.console.verbs import Verb
from watui.models import Event


@dataclass
class SessionEvent(Message, bubble=False):
    """One event from the service's subscription, as it arrived.

    It does not bubble: the app forwards it to the screens that follow that session, and a
    bubbling copy would come back to the app and be forwarded again.
    """

    event: Event


@dataclass
class StateChanged(Message, bubble=False):
    """The view state was refreshed; ``changed`` and ``removed`` are session ids.

    Posted once per coalesced batch, however many events the batch held.
    """

    changed: frozenset[str] = field(default_factory=frozenset)
    removed: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False


@dataclass
class BulkProgress(Message, bubble=False):
    """A bulk action went on: ``done`` of ``total`` sessions handled (``finished`` at the end)."""

    verb: Verb
    done: int
    total: int
    finished: bool = False
