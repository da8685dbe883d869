"""The log screen: the full event history of one session or of all, or a session's messages.

The history is read from the store page by page, then kept current from the live events the
app forwards (``follows_all`` for every session's). ``t`` cycles through the kinds that have
lines, ``/`` filters by text, ``f`` follows the newest lines; ``m`` switches a session between
events and messages.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from watui.console.requests import LogKind
from watui.errors import WatuiError
from watui.machine import EventType
from watui.models import Event, MediaContent, Message, MessageStatus
from watui.screens.common import WatuiScreen
from watui.screens.save_media import SaveMediaScreen, SaveRequest
from watui.widgets.detail_pane import describe_event, party
from watui.widgets.footer import FittingFooter
from watui.widgets.log_view import MAX_LINES, LogLine, LogView
from watui.widgets.messages import SessionEvent
from watui.widgets.state import LoggedMessage
from watui.widgets.text import clean, fit, one_line

PAGE = 1000
"""Events or messages read per call while loading the history."""

EVENT_KINDS: tuple[str | None, ...] = (None, *(t.value for t in EventType))
MESSAGE_KINDS: tuple[str | None, ...] = (None, "in", "out", "failed")

NAME_WIDTH = 14
"""The session-name column of the all-sessions log."""


class LogScreen(WatuiScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="log.back", tooltip="Clear the filter, then back"),
        Binding("slash", "filter", "Filter", id="log.filter", tooltip="Show only lines with this text"),
        Binding("t", "kind", "Type", id="log.kind", tooltip="Show one type of line at a time (cycles)"),
        Binding("f", "follow", "Follow", id="log.follow", tooltip="Keep the newest line in view (toggle)"),
        Binding("m", "switch", "Events/messages", id="log.switch",
                tooltip="Switch between the session's events and its messages"),
        Binding("s", "save_file", "Save file", id="log.save",
                tooltip="Save a media message's file to a path you give"),
    ]

    def __init__(self, session_id: str | None, kind: LogKind = LogKind.EVENTS) -> None:
        super().__init__(classes="log-screen")
        self.session_id = session_id
        self.follows_all = session_id is None
        self.kind = kind
        self.kinds = MESSAGE_KINDS if kind == LogKind.MESSAGES else EVENT_KINDS
        self.kind_index = 0
        self.loaded = False
        self._last_id = 0
        self._early: list[Event] = []
        self._seen: set[object] = set()
        self._newest_file: str | None = None
        """The newest message here with a stored file (offered by ``s``)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="log-title", classes="link-title")
        yield LogView(id="log")
        yield Input(placeholder="show lines with… (enter keeps it, escape clears)", id="log-filter")
        yield FittingFooter()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one("#log-filter", Input).display = False
        self.wapp.tune_inputs(self)
        self.view.focus()
        self._draw_title()
        loader = self._load_messages() if self.kind == LogKind.MESSAGES else self._load_events()
        self.run_worker(loader, group="log-load", exclusive=True, exit_on_error=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch":
            return self.session_id is not None
        if action == "save_file":
            return self.kind == LogKind.MESSAGES and self.session_id is not None
        return True

    # -- title ------------------------------------------------------------------------

    def _session_name(self, session_id: str) -> str:
        session = self.wapp.state.sessions.get(session_id)
        return clean(session.name) if session else session_id[:NAME_WIDTH]

    def _draw_title(self) -> None:
        view = self.view
        what = "Messages" if self.kind == LogKind.MESSAGES else "Event log"
        whose = self._session_name(self.session_id) if self.session_id else "all sessions"
        title = Text.assemble((f"{what}: ", "bold"), (whose, "bold"))
        shown, total = len(view.shown), len(view.lines)
        title.append(f"   {shown:,} of {total:,} line{'s' if total != 1 else ''}" if shown != total
                     else f"   {total:,} line{'s' if total != 1 else ''}")
        if not self.loaded:
            title.append("  loading…", style="dim")
        kind = self.kinds[self.kind_index]
        if kind:
            title.append(f"   type: {kind}", style="bold reverse")
        if view.query_text:
            title.append("   text: ")
            title.append(view.query_text, style="bold")
        title.append("   following" if view.following else "   paused (G follows)",
                     style="bold green" if view.following else "bold yellow")
        self.query_one("#log-title", Static).update(title)

    # -- lines ------------------------------------------------------------------------

    def _event_line(self, event: Event) -> LogLine:
        when = event.timestamp.strftime("%m-%d %H:%M:%S")
        text = Text(f"{when} ", style="dim", no_wrap=True, end="")
        name = ""
        if self.session_id is None:
            name = self._session_name(event.session_id)
            text.append(fit(name, NAME_WIDTH) + " ", style="bold")
        text.append_text(describe_event(event))
        return LogLine(event.id, event.type.value, text, f"{name}\n{text.plain}".casefold())

    def _message_line(self, message: LoggedMessage) -> LogLine:
        when = message.timestamp.strftime("%m-%d %H:%M:%S")
        inbound = message.direction.value == "in"
        failed = message.status == MessageStatus.FAILED
        text = Text(f"{when} ", style="dim", no_wrap=True, end="")
        text.append("← " if inbound else "→ ", style="bold cyan" if inbound else ("bold red" if failed else "bold green"))
        text.append(fit(party(message.chat), 16) + " ")
        text.append(one_line(message.text))
        status = f"  [{message.status.value}{': ' + one_line(message.error) if failed and message.error else ''}]"
        text.append(status, style="red" if failed else "dim")
        kind = "failed" if failed else message.direction.value
        return LogLine(message.key, kind, text, text.plain.casefold())

    def _add_events(self, events: list[Event]) -> None:
        lines = []
        for event in events:
            if event.id <= self._last_id:
                continue
            self._last_id = event.id
            lines.append(self._event_line(event))
        self.view.extend(lines)

    def _add_messages(self, messages: list[LoggedMessage]) -> None:
        lines = []
        for message in messages:
            if message.key in self._seen:
                continue
            self._seen.add(message.key)
            if message.has_file:
                self._newest_file = message.message_id or (str(message.id) if message.id else self._newest_file)
            lines.append(self._message_line(message))
        self.view.extend(lines)

    async def _load_events(self) -> None:
        """Every past event, oldest first, a page at a time; live ones wait until it is done."""
        after = 0
        try:
            while True:
                page = await self.wapp.service.list_events(session_id=self.session_id, after_id=after, limit=PAGE)
                if not page:
                    break
                self._add_events(page)
                after = page[-1].id
                self._draw_title()
                if len(page) < PAGE:
                    break
        except WatuiError as exc:
            self.notify(exc.message, title="Event log", severity="error", markup=False)
        self.loaded = True
        early, self._early = self._early, []
        self._add_events(early)
        self._draw_title()

    async def _load_messages(self) -> None:
        assert self.session_id is not None
        stored: list[Message] = []
        offset = 0
        try:
            while len(stored) < MAX_LINES:
                page = await self.wapp.service.list_messages(self.session_id, limit=PAGE, offset=offset)
                stored.extend(page.messages)
                offset += len(page.messages)
                if len(page.messages) < PAGE or offset >= page.total:
                    break
        except WatuiError as exc:
            self.notify(exc.message, title="Messages", severity="error", markup=False)
        self._add_messages([LoggedMessage.from_message(m) for m in reversed(stored)])
        self.loaded = True
        early, self._early = self._early, []
        self._on_live(early)
        self._draw_title()

    # -- live -------------------------------------------------------------------------

    def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        if self.session_id is not None and event.session_id != self.session_id:
            return
        if not self.loaded:
            self._early.append(event)
            return
        self._on_live([event])
        self._draw_title()

    def _on_live(self, events: list[Event]) -> None:
        if self.kind == LogKind.EVENTS:
            self._add_events(events)
            return
        for event in events:
            if event.type == EventType.MESSAGE:
                self._add_messages([m for m in (LoggedMessage.from_event(event),) if m is not None])
            elif event.type == EventType.MESSAGE_STATUS:
                self._status_changed(event)

    def _status_changed(self, event: Event) -> None:
        """A sent message was delivered or read: its line says so."""
        message_id = event.payload.get("message_id")
        try:
            status = MessageStatus(str(event.payload.get("status")))
        except ValueError:
            return
        for line in reversed(self.view.lines):
            if line.key == (message_id,):
                old = line.text.plain
                head, _, _ = old.rpartition("  [")
                text = line.text[: len(head)]
                text.append(f"  [{status.value}]", style="dim")
                self.view.replace(line.key, LogLine(line.key, line.kind, text, text.plain.casefold()))
                return

    # -- keys -------------------------------------------------------------------------

    def action_save_file(self) -> None:
        """``s``: save a media message's file (the newest one's, unless another is named)."""
        session_id = self.session_id
        if session_id is None:
            return

        def chosen(request: SaveRequest | None) -> None:
            if request is not None:
                self.run_worker(self._save(session_id, request), group="log-save", exit_on_error=False)

        self.app.push_screen(SaveMediaScreen(self._newest_file or ""), chosen)

    async def _save(self, session_id: str, request: SaveRequest) -> None:
        try:
            content = await self.wapp.service.message_media(session_id, request.message)
            size = await save_media(content, request.path)
        except WatuiError as exc:
            self.notify(exc.message, title="File not saved", severity="error", timeout=8, markup=False)
        except OSError as exc:
            self.notify(f"{request.path}: {exc.strerror or exc}", title="File not saved", severity="error",
                        timeout=8, markup=False)
        else:
            self.notify(f"{size:,} bytes ({content.mimetype}) to {request.path}", title="File saved",
                        timeout=4, markup=False)

    def action_kind(self) -> None:
        """The next type that has lines here (with the text filter), then every line again."""
        present = self.view.kinds_present()
        count = len(self.kinds)
        following = ((self.kind_index + step) % count for step in range(1, count + 1))
        index = next(i for i in following if self.kinds[i] is None or self.kinds[i] in present)
        if index == self.kind_index:
            self.notify("No other type of line here.", title="Type", timeout=2)
            return
        self.kind_index = index
        self._apply_filter()

    def action_filter(self) -> None:
        box = self.query_one("#log-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#log-filter")
    def _filter_changed(self) -> None:
        self._apply_filter()

    @on(Input.Submitted, "#log-filter")
    def _filter_submitted(self) -> None:
        box = self.query_one("#log-filter", Input)
        if not box.value:
            box.display = False
        self.view.focus()

    def _apply_filter(self) -> None:
        self.view.set_filter(self.kinds[self.kind_index], self.query_one("#log-filter", Input).value)
        self._draw_title()

    def action_follow(self) -> None:
        view = self.view
        if view.following:
            view.following = False
        else:
            view.action_bottom()
        self._draw_title()

    def action_switch(self) -> None:
        if self.session_id is None:
            return
        other = LogKind.EVENTS if self.kind == LogKind.MESSAGES else LogKind.MESSAGES
        self.app.switch_screen(LogScreen(self.session_id, other))

    def action_back(self) -> None:
        box = self.query_one("#log-filter", Input)
        if box.display or box.value or self.kind_index:
            box.value = ""
            box.display = False
            self.kind_index = 0
            self._apply_filter()
            self.view.focus()
            return
        self.dismiss()

    @on(LogView.FollowChanged)
    def _follow_changed(self) -> None:
        self._draw_title()


async def save_media(content: MediaContent, path: Path) -> int:
    """Write ``content`` to ``path`` (0600, through a temporary file beside it, so a cut-short
    save leaves no half file); the bytes written."""
    partial = path.with_name(f".{path.name}.part")
    fd = await asyncio.to_thread(os.open, partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        with open(fd, "wb") as out:  # noqa: ASYNC230 - pieces of at most 1 MiB
            if content.size:
                async for piece in content.read(0, content.size - 1):
                    out.write(piece)
                    written += len(piece)
        await asyncio.to_thread(os.replace, partial, path)
    except BaseException:
        await asyncio.to_thread(partial.unlink, True)
        raise
    return written
