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
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
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
from watui.config import Settings
from watui.console import requests as ask
from watui.console.actions import SessionActions
from watui.console.config import ConsoleConfig, default_config_path, save_theme
from watui.console.feed import Feed
from watui.console.typeahead import TypeAhead
from watui.errors import EngineFailure, WatuiError
from watui.machine import EventType, Status
from watui.manager.tuning import tune_gc
from watui.models import Caller, LinkMethod, RestoreProgress, Session, SimulateRequest
from watui.remote.link import LinkMonitor, LinkStatus
from watui.screens.commands import SessionCommands
from watui.screens.compose import ComposeScreen, Draft
from watui.screens.copy import CopyScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.hosts import HostsScreen
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.service import SessionService, Subscription
from watui.widgets.activity import Activity
from watui.widgets.messages import SessionEvent
from watui.widgets.state import ConsoleState
from watui.widgets.status_badge import phone, session_look
from watui.widgets.text import clean

if TYPE_CHECKING:
    from watui.manager import SessionManager

log = logging.getLogger(__name__)

ManagerFactory = Callable[[], Awaitable["SessionManager"]]


class WatuiApp(App[None]):
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
        self.typeahead = TypeAhead(self, background=(SessionEvent,))
        self.config_path = config_path
        self.config = ConsoleConfig.load(config_path) if config_path is not None else ConsoleConfig()
        self._service: SessionService | None = service
        self._subscription: Subscription | None = None
        self._last_recipient = ""
        self._pair_numbers: dict[str, str] = {}
        self._crashed: set[str] = set()
        self.ready = asyncio.Event()

    # ================================================================ lifecycle

    @property
    def service(self) -> SessionService:
        assert self._service is not None, "the service is set when the app mounts"
        return self._service

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
            self.set_keymap(config.keys)
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
        self.actions.request(message.session_ids, message.verb)

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
        self.run_worker(self._create(message), group="actions", exit_on_error=False)

    async def _create(self, message: ask.CreateSession) -> None:
        """Create; a refusal goes back to the form, which stays open with what was typed."""
        spec, form = message.spec, message.form
        outcome, session = await self.actions.attempt(self.service.create_session(spec))
        if not outcome.ok or session is None:
            form.refused(outcome.reason)
            return
        form.created()
        self.state.put(session)
        self.feed.touch(session.id)
        self.notify(f"Created {clean(session.name)!r}; starting it", timeout=3, markup=False)
        if spec.link_method == LinkMethod.PHONE:
            if spec.phone_number:
                self._pair_numbers[session.id] = spec.phone_number
            await self.push_screen(PairCodeScreen(session.id, session.pair_code, session.pair_code_expires_at,
                                                  phone_number=spec.phone_number))
        elif session.status != Status.CONNECTED:
            await self.push_screen(QrScreen(session.id))

    @on(ask.OpenSession)
    def _open_requested(self, message: ask.OpenSession) -> None:
        self.open_session(message.session_id)

    def open_session(self, session_id: str) -> None:
        """``enter``: the QR code (or pairing code) while linking, the details otherwise."""
        session = self.state.sessions.get(session_id)
        if session is None:
            return
        linking = session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING) and not session.linked
        if linking and (session.pair_code or session.link_method == LinkMethod.PHONE):
            self.push_screen(PairCodeScreen(session_id, session.pair_code, session.pair_code_expires_at,
                                            phone_number=self._pair_numbers.get(session_id)))
        elif linking:
            self.push_screen(QrScreen(session_id))
        else:
            self.push_screen(DetailScreen(session_id))

    @on(ask.ShowPairCode)
    def _show_pair_code(self, message: ask.ShowPairCode) -> None:
        self.open_pair_code(message.session_id, message.code, message.expires_at)

    def open_pair_code(self, session_id: str, code: str | None, expires_at: datetime | None) -> None:
        """Show the pairing code screen once; it replaces that session's QR screen if on top."""
        for screen in self.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                if code and not screen.code:
                    screen.code, screen.expires_at = code, expires_at
                    screen.refresh_code()
                return
        pair = PairCodeScreen(session_id, code, expires_at, phone_number=self._pair_numbers.get(session_id))
        top = self.screen
        if isinstance(top, QrScreen) and top.session_id == session_id:
            top._dismissed = True
            self.switch_screen(pair)
        else:
            self.push_screen(pair)

    @on(ask.LinkByPhone)
    def _link_by_phone(self, message: ask.LinkByPhone) -> None:
        self.link_by_phone(message.session_id)

    def link_by_phone(self, session_id: str) -> None:
        session = self.state.sessions.get(session_id)
        name = session.name if session else session_id

        def answered(number: str | None) -> None:
            if number:
                self._pair_numbers[session_id] = number
                self.run_worker(self._request_pair_code(session_id, number), group="actions",
                                exit_on_error=False)

        self.push_screen(PhonePrompt(name), answered)

    async def _request_pair_code(self, session_id: str, number: str) -> None:
        self.open_pair_code(session_id, None, None)
        session = self.state.sessions.get(session_id)
        name = clean(session.name) if session else session_id
        code = await self.actions.call(f"Pairing code for {name!r}", self.service.request_pair_code(session_id, number))
        for screen in self.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                if code is None:
                    screen.close()
                else:
                    screen.code, screen.expires_at = code.code, code.expires_at
                    screen.refresh_code()

    @on(ask.ComposeMessage)
    def _compose_requested(self, message: ask.ComposeMessage) -> None:
        self.compose_message(message.session_id)

    def compose_message(self, session_id: str) -> None:
        """``m``: the compose box for a connected session; any other status is told, not opened."""
        session = self.state.sessions.get(session_id)
        if session is None:
            return
        if session.status != Status.CONNECTED:
            self.notify(
                f"{clean(session.name)!r} is {session_look(session).label}, not connected: only a connected "
                "session can send messages.",
                title="Cannot send", severity="warning", timeout=5, markup=False,
            )
            return

        def composed(draft: Draft | None) -> None:
            if draft is not None:
                self._last_recipient = phone(draft.to)
                self.run_worker(self._send_message(session_id, draft), group="actions", exit_on_error=False)

        self.push_screen(ComposeScreen(session.name, session.phone_number, self._last_recipient), composed)

    async def _send_message(self, session_id: str, draft: Draft) -> None:
        """Send; the ``message`` event (sent or failed) puts it in the log, the toast says how it went."""
        session = self.state.sessions.get(session_id)
        name = clean(session.name) if session else session_id
        self.actions.pending += 1
        try:
            message = await self.service.send_message(session_id, draft.to, draft.text)
        except EngineFailure as exc:
            # The manager stored the failed message too: it shows in the log with this reason.
            self.notify(exc.message, title=f"Message to {phone(draft.to)} failed", severity="error", timeout=8,
                        markup=False)
        except WatuiError as exc:
            self.notify(exc.message, title="Message not sent", severity="error", timeout=8, markup=False)
        except Exception as exc:  # an engine bug must not take the console down
            log.exception("sending from %s failed", session_id)
            self.notify(f"{type(exc).__name__}: {exc}", title="Message not sent", severity="error", timeout=8,
                        markup=False)
        else:
            self.notify(f"From {name!r} to {clean(phone(message.chat))}", title="Message sent", timeout=3,
                        markup=False)
        finally:
            self.actions.pending -= 1

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
        """Quit at once when nothing is in flight; ask first when an action is still running."""
        from watui.screens.confirm import ConfirmScreen

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


# ==================================================================== entry point


def run_console(settings: Settings, demo: bool) -> None:
    """``watui`` / ``watui --demo``: open the manager, run the console, close it cleanly.

    SIGHUP (the SSH connection dropped) and SIGTERM end the app like ``q`` does; the manager
    then parks running sessions in the store so the next start resumes them.
    """
    asyncio.run(_run_console(settings, demo))


@contextlib.contextmanager
def on_hangup_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Send SIGHUP (the SSH session closed) and SIGTERM to ``handler`` while the console runs,
    so it can shut down cleanly instead of dying mid-write; the handlers go afterwards."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGHUP, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


async def _run_console(settings: Settings, demo: bool) -> None:
    from watui.manager import SessionManager

    _log_to_file(settings)
    if settings.engine == "neonize":
        _keep_native_output_off_screen(settings.data_dir / "watui.log")
    manager = await SessionManager.open(settings)
    app = WatuiApp(manager, demo=demo, freeze_heap=True, config_path=default_config_path())
    loop = asyncio.get_running_loop()
    hangups: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(_hang_up(app, manager))
        hangups.add(task)
        task.add_done_callback(hangups.discard)

    try:
        with on_hangup_signals(on_hangup):
            await app.run_async()
    finally:
        await manager.aclose()
    if demo:
        _say(f"watui demo data is in {settings.data_dir}")


def _keep_native_output_off_screen(log_path: Path) -> None:
    """neonize's Go runtime prints straight to file descriptors 1 and 2, which would tear
    Textual's screen. Point those descriptors at the log, and hand Python (and so Textual,
    which writes to ``sys.__stderr__`` and sizes the screen from ``sys.__stdout__``) new
    descriptors on the terminal."""
    if not (os.isatty(1) and os.isatty(2)):
        return
    terminal_out, terminal_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = sys.__stdout__ = os.fdopen(terminal_out, "w", buffering=1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = os.fdopen(terminal_err, "w", buffering=1)  # type: ignore[misc]


HANGUP_GRACE = 5.0
"""Seconds Textual gets to restore a terminal that is gone before the process just ends."""


async def _hang_up(app: WatuiApp, manager: SessionManager) -> None:
    """SIGHUP/SIGTERM: park the sessions in the store first, then end the app.

    Restoring a terminal whose SSH connection dropped can block in Textual's writer thread
    (the pty is gone), so the sessions are saved before the app is asked to exit, and a
    watchdog ends the process if that exit never completes.
    """
    try:
        await manager.aclose()
    except Exception:
        log.exception("closing the manager on hangup failed")
    finally:
        watchdog = threading.Timer(HANGUP_GRACE, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()
        app.exit()


def _say(line: str) -> None:
    """Print after the app ended; the terminal may be gone (a hung-up SSH session)."""
    try:
        print(line, flush=True)
    except OSError:
        # Nothing to tell and nowhere to tell it: keep the interpreter's exit flush quiet too.
        sys.stdout = open(os.devnull, "w")


def _log_to_file(settings: Settings) -> None:
    """Library warnings go to a file: anything printed to the terminal would tear the screen."""
    from watui.logs import configure_logging
    from watui.stores.datadir import DataDirUnusable, make_private

    try:
        make_private(settings.data_dir)
        configure_logging(settings.log_format, filename=settings.data_dir / "watui.log")
    except OSError as exc:
        raise DataDirUnusable(f"cannot write to the data dir {settings.data_dir}: {exc.strerror}") from None
