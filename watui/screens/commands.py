"""Command palette provider: find a session by name or phone, and run any console action.

Each command posts one of the app's requests (:mod:`watui.console.requests`), like a key would.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content
from textual.message import Message

from watui.console import requests as ask
from watui.console.verbs import Verb
from watui.screens.common import host
from watui.widgets.text import clean

MAX_SESSION_HITS = 40
"""Enough to choose from; more only slows the palette down on 10,000 sessions."""


def highlight(matcher: Matcher, text: str) -> Content:
    """``Matcher.highlight`` without reading the text as markup (session names are user text)."""
    content = Content(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    if score:
        for offset in offsets:
            if not text[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class SessionCommands(Provider):
    """Sessions ("Go to sales-desk") and actions ("Stop sales-desk", "New session")."""

    def _post(self, message: Message) -> Callable[[], object]:
        return partial(self.app.post_message, message)

    def _global(self) -> list[tuple[str, Callable[[], object], str]]:
        return [
            ("New session", self._post(ask.NewSession()), "Create a session and link a phone"),
            ("Stop all sessions", self._post(ask.StopAll()), "Stop every running session (asks first)"),
            ("Event log: all sessions", self._post(ask.OpenLog(None)), "Every event, filtered, live"),
            ("Help: keys and statuses", self._post(ask.ShowHelp()), "Every key, and what each status means"),
            ("Engine hosts", partial(self.app.run_action, "app.hosts"),
             "The engine host processes and the sessions each runs"),
            ("Export sessions as CSV", self._post(ask.ExportSessions(ask.ExportFormat.CSV)),
             "The rows shown (filter and sort applied), to a new file"),
            ("Export sessions as JSON", self._post(ask.ExportSessions(ask.ExportFormat.JSON)),
             "The rows shown (filter and sort applied), to a new file"),
        ]

    def _for_current(self) -> list[tuple[str, Callable[[], object], str]]:
        current = getattr(self.app, "current_session", lambda: None)()
        if current is None:
            return []
        name, sid = clean(current.name), current.id

        def verb(v: Verb) -> Callable[[], object]:
            return self._post(ask.RunVerb((sid,), v))

        return [
            (f"Open {name}", self._post(ask.OpenSession(sid)), "QR code while linking, details otherwise"),
            (f"Start {name}", verb(Verb.START), ""),
            (f"Stop {name}", verb(Verb.STOP), ""),
            (f"Restart {name}", verb(Verb.RESTART), ""),
            (f"Log out {name}", verb(Verb.LOGOUT), "asks first"),
            (f"Delete {name}", verb(Verb.DELETE), "asks first"),
            (f"Link {name} by phone number", self._post(ask.LinkByPhone(sid)), "pairing code"),
            (f"Send a message from {name}", self._post(ask.ComposeMessage(sid)),
             "a test message; connected sessions only"),
            (f"Event log of {name}", self._post(ask.OpenLog(sid)), "every event of this session, live"),
            (f"Message history of {name}", self._post(ask.OpenLog(sid, ask.LogKind.MESSAGES)), ""),
            (f"Copy the id, phone or JID of {name}", self._post(ask.CopyFrom(sid)), "to the clipboard"),
        ]

    async def discover(self) -> Hits:
        for text, command, help_text in [*self._global(), *self._for_current()]:
            yield DiscoveryHit(Content(text), command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in [*self._global(), *self._for_current()]:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlight(matcher, text), command, help=help_text)
        if not query.strip():
            return
        found = 0
        for session in host(self.app).state.sessions.values():
            number = f", +{session.phone_number}" if session.phone_number else ""
            text = f"Go to {clean(session.name)}  ({session.status.value}{number})"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlight(matcher, text), self._post(ask.GoToSession(session.id)),
                          help="select it in the table")
                found += 1
                if found >= MAX_SESSION_HITS:
                    return
