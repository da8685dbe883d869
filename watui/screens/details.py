"""One session's details on the whole screen (``enter`` on a session that is not linking)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from watui.screens.common import FollowerScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.messages import StateChanged


class DetailScreen(FollowerScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="details.back", tooltip="Back to the sessions"),
        Binding("m", "compose", "Message", id="details.message",
                tooltip="Send a test message from this session (connected only)"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("", id="details-title", classes="link-title")
        yield DetailPane(self.wapp.now, send_key="m", id="details-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._draw()
        self.wapp.ensure_events(self.session_id)
        self.wapp.ensure_messages(self.session_id)

    def action_compose(self) -> None:
        self.wapp.compose_message(self.session_id)

    def _draw(self) -> None:
        session = self.wapp.state.sessions.get(self.session_id)
        self.query_one("#details-title", Static).update(
            f" Session details: {session.name}" if session else " Session deleted"
        )
        state = self.wapp.state
        self.query_one(DetailPane).show(
            session, state.recent(self.session_id), state.deliveries.get(self.session_id),
            state.messages_of(self.session_id),
        )
        self.wapp.refresh_deliveries(self.session_id)

    def on_state_changed(self, message: StateChanged) -> None:
        if self.session_id in message.removed:
            self.close()
        elif message.everything or self.session_id in message.changed:
            self._draw()
