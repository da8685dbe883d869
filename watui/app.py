"""The Textual console: one app over one :class:`~watui.service.SessionService`.

The app subscribes to the service once and hands each event to its :class:`~watui.console.feed.Feed`,
which keeps the view state (:class:`ConsoleState`) current in coalesced batches. Screens never
call the app: they post the requests of :mod:`watui.console.requests`, handled here with ``@on``;
verbs on sessions go to :class:`~watui.console.actions.SessionActions`. Every action goes through the
service; a refusal is a toast with the service's own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen

from watui.clock import Clock, RealClock
from watui.config import default_data_dir
from watui.console import requests as ask
from watui.console.actions import SessionActions
from watui.console.config import ConsoleConfig, check_keys, save_theme
from watui.console.export import ExportFailed, export_sessions
from watui.console.feed import Feed
from watui.console.linking import Linking
from watui.console.sending import Sending
from watui.console.typeahead import TypeAhead
from watui.errors import WatuiError
from watui.machine import EventType, Status
from watui.manager.tuning import tune_gc
from watui.models import Caller, RestoreProgress, Session, SimulateRequest
from watui.remote.link import LinkMonitor, LinkStatus
from watui.screens.commands import SessionCommands
from watui.screens.copy import CopyScreen
from watui.screens.help import HelpScreen
from watui.screens.hosts import HostsScreen
from watui.screens.keymap import key_scopes
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.quit import QuitChoice, QuitScreen
from watui.service import SessionService, Subscription
from watui.widgets.activity import Activity
from watui.widgets.messages import SessionEvent
from watui.widgets.state import ConsoleState
from watui.widgets.text import clean

if TYPE_CHECKING:
    from watui.manager import SessionManager

log = logging.getLogger(__name__)

ManagerFactory = Callable[[], Awaitable["SessionManager"]]


class WatuiApp(App[QuitChoice | None]):
    """The console. Give it a running manager, or a factory that opens one in the app's loop,
    or a service (``watui attach``: a :class:`watui.remote.RemoteService` and its ``link``)."""

    CSS_PATH = "watui.tcss"
    TITLE = "watui"
    COMMANDS = App.COMMANDS | {SessionCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Every key, and what each status means"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave watui; sessions keep running state in the store"),
        Binding("H", "hosts", "Engine hosts", id="app.hosts", show=False,
                tooltip="The engine host processes and the sessions each one runs"),
        Binding("ctrl+c", "quit", "Quit", id="app.quit_ctrl_c", show=False, priority=True,
                tooltip="Leave watui"),
    ]

    server_link: reactive[LinkStatus | None] = reactive(None, always_update=True)
    """Attach mode: the server and the state of the link to it (``None`` in-process)."""

    def __init__(
        self,
        manager: SessionManager | None = None,
        *,
        open_manager: ManagerFactory | None = None,
        service: SessionService | None = None,
        link: LinkMonitor | None = None,
        caller: Caller | None = None,
        clock: Clock | None = None,
        demo: bool = False,
        refresh_interval: float = 0.05,
        cursor_blink: bool = True,
        freeze_heap: bool = False,
        config_path: Path | None = None,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__()
        if manager is None and open_manager is None and service is None:
            raise ValueError("WatuiApp needs a manager, an open_manager factory or a service")
        self.manager: SessionManager | None = manager
        self._open_manager = open_manager
        self._owns_manager = manager is None and service is None
        self.link = link
        self.caller = caller or Caller.local_admin()
        self.clock: Clock = clock or (manager.clock if manager is not None else RealClock())
        self.demo = demo
        self.refresh_interval = refresh_interval
        self.cursor_blink = cursor_blink
        self.freeze_heap = freeze_heap
        self.state = ConsoleState()
        self.activity = Activity()
        self.feed = Feed(self)
        self.actions = SessionActions(self)
        self.linking = Linking(self)
        self.sending = Sending(self)
        self.typeahead = TypeAhead(self, background=(SessionEvent,))
        self.config_path = config_path
        self.config = ConsoleConfig.load(config_path) if config_path is not None else ConsoleConfig()
        self._data_dir = data_dir
        self._service: SessionService | None = service
        self._subscription: Subscription | None = None
        self._crashed: set[str] = set()
        self.ready = asyncio.Event()

    # ================================================================ lifecycle

    @property
    def service(self) -> SessionService:
        assert self._service is not None, "the service is set when the app mounts"
        return self._service

    @property
    def data_dir(self) -> Path:
        """Where an export goes when the current directory cannot take it: the one given, the
        manager's, else the platform's default (attached, the server's is elsewhere)."""
        if self._data_dir is not None:
            return self._data_dir
        return self.manager.settings.data_dir if self.manager is not None else default_data_dir()

    @property
    def codes_per_attempt(self) -> int:
        return self.manager.settings.qr_codes_per_attempt if self.manager is not None else 6

    @property
    def restore_progress(self) -> RestoreProgress | None:
        """Sessions still being restored at start-up (``None`` when there is nothing to wait for)."""
        if self._service is None:
            return None
        try:
            return self._service.restore_progress
        except Exception:  # a remote service that cannot tell must not break the header
            return None

    @property
    def flushes(self) -> int:
        return self.feed.flushes

    @property
    def pending_actions(self) -> int:
        return self.actions.pending

    def tune_inputs(self, screen: Screen[Any]) -> None:
        """Apply the app's cursor-blink choice to a screen's inputs (snapshots turn it off)."""
        from textual.widgets import Input

        for box in screen.query(Input):
            box.cursor_blink = self.cursor_blink

    def now(self) -> datetime:
        """The app's clock: relative times and countdowns are computed against it."""
        return self.clock.now()

    def _apply_config(self) -> None:
        config = self.config
        if config.problem:
            self.notify(config.problem, title="Console config ignored", severity="warning", timeout=10,
                        markup=False)
            return
        if config.theme:
            if config.theme in self.available_themes:
                self.theme = config.theme
            else:
                self.notify(f"No theme called {config.theme!r}; using {self.theme!r}.",
                            title="Console config", severity="warning", markup=False)
        if config.keys:
            checked = check_keys(config.keys, key_scopes(type(self)))
            if checked.ignored:
                count = len(checked.ignored)
                self.notify("\n".join(checked.ignored), severity="warning", timeout=20, markup=False,
                            title=f"Console config: {count} key remap{'s' if count != 1 else ''} ignored")
            self.set_keymap(checked.applied)
        self.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, theme: Any) -> None:
        """Remember the theme chosen (command palette, ctrl+p → "theme") for the next start."""
        if self.config_path is None or theme.name == self.config.theme:
            return
        self.config.theme = theme.name
        try:
            save_theme(self.config_path, theme.name)
        except OSError as exc:
            self.notify(f"Could not save the theme to {self.config_path}: {exc.strerror or exc}",
                        severity="warning", markup=False)

    async def on_mount(self) -> None:
        self._apply_config()
        if self._service is None:
            if self.manager is None:
                assert self._open_manager is not None
                self.manager = await self._open_manager()
                self.clock = self.manager.clock
            self._service = self.manager.service(self.caller)
        if self.link is not None:
            self.link.listen(self._link_changed)
        # Subscribe before listing: an event that lands in between is applied on top.
        self._subscription = self.service.subscribe()
        page = await self.service.list_sessions(limit=None)
        self.state.replace_all(page.sessions)
        self.feed.connected = {s.id for s in page.sessions if s.status == Status.CONNECTED}
        self.activity.sample_connected(self.now(), len(self.feed.connected))
        await self.push_screen(MainScreen())
        if self.freeze_heap:
            # Thousands of session snapshots and widgets live as long as the app: leave them
            # out of the cyclic GC, whose full passes over them would otherwise stall frames
            # (a 10,000-session heap took 100-300 ms per full collection).
            tune_gc()
        self.run_worker(self._pump_events(), group="bus", exit_on_error=False)
        if self.demo:
            self.run_worker(self._seed_demo(), group="demo", exit_on_error=False)
        self.ready.set()

    async def on_event(self, event: events.Event) -> None:
        # A key read from the terminal waits until the one before it has had its effect.
        if isinstance(event, events.Key) and not event.is_forwarded and self.typeahead.hold(event):
            return
        await super().on_event(event)

    async def on_unmount(self) -> None:
        self.typeahead.cancel()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.aclose()
        if self._owns_manager and self.manager is not None:
            await self.manager.aclose()

    async def _pump_events(self) -> None:
        """The one subscription: each event becomes a message for the app."""
        assert self._subscription is not None
        async for event in self._subscription:
            self.post_message(SessionEvent(event))

    async def _seed_demo(self) -> None:
        from watui.console.demo import seed_demo

        try:
            await seed_demo(self.service)
        except WatuiError as exc:
            self.notify(f"Demo data: {exc.message}", severity="warning", markup=False)

    def _link_changed(self, status: LinkStatus) -> None:
        """Attach mode: show the link; after a resync (events lost) re-read every session."""
        before = self.server_link
        self.server_link = status
        if before is not None and status.resyncs > before.resyncs:
            self.feed.reload_all()

    # ================================================================ events → state

    def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        self.feed.event(event)
        if _engine_crashed(event.type, event.payload):
            self._tell_engine_crash(event.session_id)
        # Screens that follow one session (QR, pairing code) or all of them (the log) react at once.
        for screen in self.screen_stack:
            follows = getattr(screen, "session_id", False)
            if follows == event.session_id or (follows is None and getattr(screen, "follows_all", False)):
                screen.post_message(SessionEvent(event))

    def _tell_engine_crash(self, session_id: str) -> None:
        """One toast per host crash, however many of its sessions report it."""
        if not self._crashed:
            self.set_timer(0.3, self._crash_toast, name="engine-crash-toast")
        self._crashed.add(session_id)

    def _crash_toast(self) -> None:
        count, self._crashed = len(self._crashed), set()
        self.notify(
            f"{count} session{'s' if count != 1 else ''} lost {'their' if count != 1 else 'its'} engine; "
            "linked ones reconnect by themselves. Press H to see the hosts.",
            title="An engine host process ended", severity="warning", timeout=8,
        )

    def post_to_screens(self, message: Message) -> None:
        for screen in self.screen_stack:
            screen.post_message(message)

    def forget(self, session_id: str) -> None:
        self.feed.forget(session_id)

    async def settle(self) -> None:
        """Apply every queued event now and redraw times (tests move a fake clock)."""
        if self.feed.pending:
            await self.feed.flush()
        self.refresh_times()

    def refresh_times(self) -> None:
        """Redraw countdowns and relative times on every screen, against the app's clock."""
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_times", None)
            if refresh is not None:
                refresh()

    def ensure_events(self, session_id: str) -> None:
        self.feed.ensure_events(session_id)

    def ensure_messages(self, session_id: str) -> None:
        self.feed.ensure_messages(session_id)

    def refresh_deliveries(self, session_id: str) -> None:
        self.feed.refresh_deliveries(session_id)

    def refresh_stats(self, session_id: str) -> None:
        self.feed.refresh_stats(session_id)

    # ================================================================ requests from screens

    @property
    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def current_session(self) -> Session | None:
        main = self.main_screen
        return main.current_session() if main is not None else None

    def go_to_session(self, session_id: str) -> None:
        main = self.main_screen
        if main is not None:
            main.go_to(session_id)

    @on(ask.GoToSession)
    def _go_to(self, message: ask.GoToSession) -> None:
        self.go_to_session(message.session_id)

    @on(ask.RunVerb)
    def _run_verb(self, message: ask.RunVerb) -> None:
        self.actions.request(message.session_ids, message.verb, hidden=message.hidden)

    @on(ask.StopAll)
    def _stop_all(self) -> None:
        self.actions.stop_all()

    @on(ask.NewSession)
    def new_session(self) -> None:
        if any(isinstance(s, NewSessionScreen) for s in self.screen_stack):
            return
        existing = {s.name for s in self.state.sessions.values()}
        default = next(f"session-{n}" for n in range(1, len(existing) + 2) if f"session-{n}" not in existing)
        self.push_screen(NewSessionScreen(default))

    @on(ask.CreateSession)
    def _create_requested(self, message: ask.CreateSession) -> None:
        self.run_worker(self.linking.create(message), group="actions", exit_on_error=False)

    @on(ask.OpenSession)
    def _open_requested(self, message: ask.OpenSession) -> None:
        self.open_session(message.session_id)

    def open_session(self, session_id: str) -> None:
        """``enter``: the QR code (or pairing code) while linking, the details otherwise."""
        self.linking.open_session(session_id)

    @on(ask.ShowPairCode)
    def _show_pair_code(self, message: ask.ShowPairCode) -> None:
        self.linking.open_pair_code(message.session_id, message.code, message.expires_at)

    @on(ask.LinkByPhone)
    def _link_by_phone(self, message: ask.LinkByPhone) -> None:
        self.link_by_phone(message.session_id)

    def link_by_phone(self, session_id: str) -> None:
        self.linking.link_by_phone(session_id)

    @on(ask.ComposeMessage)
    def _compose_requested(self, message: ask.ComposeMessage) -> None:
        self.sending.compose_message(message.session_id)

    @on(ask.Simulate)
    def _simulate(self, message: ask.Simulate) -> None:
        request = SimulateRequest.model_validate({"action": message.action})
        self.run_worker(self.actions.call(f"Demo {message.action}",
                                          self.service.simulate(message.session_id, request)),
                        group="actions", exit_on_error=False)

    @on(ask.OpenLog)
    def _open_log(self, message: ask.OpenLog) -> None:
        self.push_screen(LogScreen(message.session_id, message.kind))

    @on(ask.CopyFrom)
    def _copy_from(self, message: ask.CopyFrom) -> None:
        session = self.state.sessions.get(message.session_id)
        if session is None:
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                what, text = choice
                self.copy_to_clipboard(text)
                self.notify(clean(text), title=f"Copied the {what}", timeout=3, markup=False)

        self.push_screen(CopyScreen(session), chosen)

    @on(ask.ExportSessions)
    def _export_sessions(self, message: ask.ExportSessions) -> None:
        main = self.main_screen
        rows = list(main.table.rows) if main is not None else []
        if not rows:
            self.notify("The table shows no session: nothing to export.", title="Export",
                        severity="warning", timeout=4)
            return
        self.run_worker(self._export(rows, message.format, self.data_dir), group="export", exit_on_error=False)

    async def _export(self, rows: list[Session], fmt: ask.ExportFormat, data_dir: Path) -> None:
        try:
            done = await export_sessions(rows, fmt, self.now(), data_dir)
        except ExportFailed as exc:
            self.notify(str(exc), title="Export failed", severity="error", timeout=10, markup=False)
            return
        self.notify(f"{done.path}\nin {done.where}", markup=False, timeout=10,
                    title=f"Exported {done.count} session{'s' if done.count != 1 else ''} as {fmt.value.upper()}")

    @on(ask.ShowHelp)
    def action_help(self) -> None:
        if any(isinstance(s, HelpScreen) for s in self.screen_stack):
            return
        self.push_screen(HelpScreen(HelpScreen.all_sections(self.BINDINGS)))

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """A toast; on a screen where toasts would hide something (the QR code), a line of its own."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)
        show = getattr(self.screen, "show_notice", None) if self.screen_stack else None
        if show is not None:
            show(title, message, severity)

    # ================================================================ app keys

    def action_hosts(self) -> None:
        if not isinstance(self.screen, HostsScreen):
            self.push_screen(HostsScreen())

    async def action_quit(self) -> None:
        """Quit. With phones connected to the engine in this process, ask first: quit (they go
        offline), keep them running in a background ``watui serve`` (the app returns
        :attr:`QuitChoice.KEEP_RUNNING` and its launcher hands the data dir over), or cancel;
        ctrl+c on that question quits. Otherwise ask only while actions are in flight."""
        from watui.screens.confirm import ConfirmScreen

        if isinstance(self.screen, QuitScreen):
            self.exit()
            return
        in_process = self.manager is not None and not self.manager.settings.clustered
        connected = sum(s.status == Status.CONNECTED for s in self.state.sessions.values()) if in_process else 0
        if connected:
            def chosen(choice: QuitChoice | None) -> None:
                if choice in (QuitChoice.QUIT, QuitChoice.KEEP_RUNNING):
                    self.exit(choice)

            self.push_screen(QuitScreen(connected, self.pending_actions), chosen)
            return
        if self.pending_actions <= 0:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(
            ConfirmScreen("Quit?", f"{self.pending_actions} action(s) are still running. Quit anyway? "
                          "Sessions keep their state.", "Quit", danger=False),
            answered,
        )


def _engine_crashed(kind: EventType, payload: dict[str, Any]) -> bool:
    """An event saying a session's engine host process died (see docs/engine-hosts.md)."""
    return (kind == EventType.DISCONNECTED and payload.get("reason") == "engine_crashed") or (
        kind == EventType.ERROR and payload.get("code") == "engine_crashed"
    )
