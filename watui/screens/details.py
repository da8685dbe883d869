"""One session's details on the whole screen (``enter`` on a session that is not linking)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from watui.console import requests as ask
from watui.screens.common import FollowerScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.footer import FittingFooter
from watui.widgets.messages import StateChanged
from watui.widgets.text import clean


class DetailScreen(FollowerScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="details.back", tooltip="Back to the sessions"),
        Binding("m", "compose", "Message", id="details.message",
                tooltip="Send a test message from this session (connected only)"),
        Binding("e", "log('events')", "Log", id="details.log", tooltip="Every event of this session, live"),
        Binding("M", "log('messages')", "Messages", id="details.messages",
                tooltip="Every message of this session, live"),
        Binding("y", "copy", "Copy", id="details.copy", show=False, tooltip="Copy the id, phone number or JID"),
        Binding("down,j", "scroll('down')", "Down", id="details.down", show=False, tooltip="Scroll down"),
        Binding("up,k", "scroll('up')", "Up", id="details.up", show=False, tooltip="Scroll up"),
        Binding("pagedown,space", "scroll('page_down')", "Page down", id="details.page_down", show=False,
                tooltip="One screen down"),
        Binding("pageup", "scroll('page_up')", "Page up", id="details.page_up", show=False, tooltip="One screen up"),
        Binding("home,g", "scroll('home')", "Top", id="details.top", show=False, tooltip="To the top"),
        Binding("end,G", "scroll('end')", "Bottom", id="details.bottom", show=False, tooltip="To the bottom"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("", id="details-title", classes="link-title")
        yield DetailPane(self.wapp.now, send_key="m", id="details-pane")
        yield FittingFooter()

    def on_mount(self) -> None:
        self._draw()
        self.wapp.ensure_events(self.session_id)
        self.wapp.ensure_messages(self.session_id)

    def action_compose(self) -> None:
        self.post_message(ask.ComposeMessage(self.session_id))

    def action_log(self, kind: str) -> None:
        self.post_message(ask.OpenLog(self.session_id, ask.LogKind(kind)))

    def action_copy(self) -> None:
        self.post_message(ask.CopyFrom(self.session_id))

    def action_scroll(self, where: str) -> None:
        """The pane scrolls with keys as well as the mouse."""
        pane = self.query_one(DetailPane)
        moves = {
            "down": lambda: pane.scroll_down(animate=False),
            "up": lambda: pane.scroll_up(animate=False),
            "page_down": lambda: pane.scroll_page_down(animate=False),
            "page_up": lambda: pane.scroll_page_up(animate=False),
            "home": lambda: pane.scroll_home(animate=False),
            "end": lambda: pane.scroll_end(animate=False),
        }
        moves[where]()

    def _draw(self) -> None:
        session = self.wapp.state.sessions.get(self.session_id)
        self.query_one("#details-title", Static).update(
            Text(f" Session details: {clean(session.name)}" if session else " Session deleted")
        )
        state = self.wapp.state
        self.query_one(DetailPane).show(
            session, state.recent(self.session_id), state.deliveries.get(self.session_id),
            state.messages_of(self.session_id),
        )
        self.wapp.refresh_deliveries(self.session_id)
        self.wapp.refresh_stats(self.session_id)

    def on_state_changed(self, message: StateChanged) -> None:
        if self.session_id in message.removed:
            self.close()
        elif message.everything or self.session_id in message.changed:
            self._draw()
