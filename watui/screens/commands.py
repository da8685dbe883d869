"""Command palette provider: find a session by name or phone, and run any console action."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from watui.app import WatuiApp

MAX_SESSION_HITS = 40
"""Enough to choose from; more only slows the palette down on 10,000 sessions."""


class SessionCommands(Provider):
    """Sessions ("Go to sales-desk") and actions ("Stop sales-desk", "New session")."""

    @property
    def wapp(self) -> WatuiApp:
        return cast("WatuiApp", self.app)

    def _global(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.wapp
        return [
            ("New session", app.new_session, "Create a session and link a phone"),
            ("Stop all sessions", app.stop_all, "Stop every running session (asks first)"),
            ("Filter sessions", app.focus_filter, "Filter the table by name, phone or status"),
            ("Help: keys and statuses", app.action_help, "Every key, and what each status means"),
            ("Engine hosts", app.action_hosts, "The engine host processes and the sessions each runs"),
        ]

    def _for_current(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.wapp
        current = app.current_session()
        if current is None:
            return []
        name = current.name
        return [
            (f"Open {name}", partial(app.open_session, current.id), "QR code while linking, details otherwise"),
            (f"Start {name}", partial(app.run_action_on, current.id, "start"), ""),
            (f"Stop {name}", partial(app.run_action_on, current.id, "stop"), ""),
            (f"Restart {name}", partial(app.run_action_on, current.id, "restart"), ""),
            (f"Log out {name}", partial(app.confirm_then, current.id, "logout", "Log out?",
                                        f"Unlink {name!r} from its phone?", "Log out"), "asks first"),
            (f"Delete {name}", partial(app.confirm_then, current.id, "delete", "Delete session?",
                                       f"Delete {name!r} and its auth data?", "Delete"), "asks first"),
            (f"Link {name} by phone number", partial(app.link_by_phone, current.id), "pairing code"),
            (f"Send a message from {name}", partial(app.compose_message, current.id),
             "a test message; connected sessions only"),
        ]

    async def discover(self) -> Hits:
        for text, command, help_text in [*self._global(), *self._for_current()]:
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in [*self._global(), *self._for_current()]:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, help=help_text)
        if not query.strip():
            return
        found = 0
        for session in self.wapp.state.sessions.values():
            text = f"Go to {session.name}  ({session.status.value}{', +' + session.phone_number if session.phone_number else ''})"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.wapp.go_to_session, session.id),
                          help="select it in the table")
                found += 1
                if found >= MAX_SESSION_HITS:
                    return
