"""The Textual console: one app over one :class:`~watui.service.SessionService`.

The app subscribes to the service once, turns each event into a :class:`SessionEvent`
message, and keeps the console's view state (:class:`ConsoleState`) current. Session
snapshots are re-read for the sessions that changed in one coalesced batch every
``refresh_interval`` seconds, so a burst of a thousand status changes is one repaint, and the
next batch is scheduled only after the previous one finished. Every action goes through the
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
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from watui.clock import Clock, RealClock
from watui.config import Settings
from watui.errors import EngineFailure, SessionNotFound, WatuiError
from watui.machine import RUNNING, EventType, Status
from watui.models import Caller, LinkMethod, Session, SessionCreate, SimulateRequest
from watui.remote.link import LinkMonitor, LinkStatus
from watui.screens.commands import SessionCommands
from watui.screens.compose import ComposeScreen, Draft
from watui.screens.confirm import ConfirmScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.hosts import HostsScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.service import SessionService, Subscription
from watui.tuning import tune_gc
from watui.widgets.messages import SessionEvent, StateChanged
from watui.widgets.state import RECENT_EVENTS, RECENT_MESSAGES, ConsoleState
from watui.widgets.status_badge import STATUS_LOOKS, phone

if TYPE_CHECKING:
    from watui.manager import SessionManager

log = logging.getLogger(__name__)

ManagerFactory = Callable[[], Awaitable["SessionManager"]]

BULK_RELOAD = 256
"""Above this many changed sessions in one batch, re-list everything instead of one by one."""

FLUSH_RETRY = 1.0
"""Seconds before re-reading changed sessions after a read failed (the server is away)."""

DELIVERIES_EVERY = 1.0
"""Seconds between two reads of the highlighted session's webhook deliveries."""

STOP_ALL_BATCH = 100
"""Sessions stopped concurrently by "stop all"."""

VERB_DONE = {
    "start": "Started",
    "stop": "Stopped",
    "restart": "Restarted",
    "logout": "Logged out",
    "delete": "Deleted",
    "restart_or_start": "Started again",
}


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
        self._service: SessionService | None = service
        self._reload_all = False
        self._subscription: Subscription | None = None
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._flush_scheduled = False
        self._flushing = False
        self._events_loaded: set[str] = set()
        self._deliveries_loaded: dict[str, float] = {}
        self._last_recipient = ""
        self.pending_actions = 0
        self._crashed: set[str] = set()
        self.ready = asyncio.Event()
        self.flushes = 0

    # ================================================================ lifecycle

    @property
    def service(self) -> SessionService:
        assert self._service is not None, "the service is set when the app mounts"
        return self._service

    @property
    def codes_per_attempt(self) -> int:
        return self.manager.settings.qr_codes_per_attempt if self.manager is not None else 6

    def tune_inputs(self, screen: Screen[Any]) -> None:
        """Apply the app's cursor-blink choice to a screen's inputs (snapshots turn it off)."""
        from textual.widgets import Input

        for box in screen.query(Input):
            box.cursor_blink = self.cursor_blink

    def now(self) -> datetime:
        """The app's clock: relative times and countdowns are computed against it."""
        return self.clock.now()

    async def on_mount(self) -> None:
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
        await self.push_screen(MainScreen())
        if self.freeze_heap:
            # Thousands of session snapshots and widgets live as long as the app: leave them
            # out of the cyclic GC, whose full passes over them would otherwise stall frames
            # (a 10,000-session heap took 100-300 ms per full collection).
            tune_gc()
        self._pump_events()
        if self.demo:
            self._seed_demo()
        self.ready.set()

    async def on_unmount(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.aclose()
        if self._owns_manager and self.manager is not None:
            await self.manager.aclose()

    @work(group="bus", exit_on_error=False)
    async def _pump_events(self) -> None:
        """The one subscription: each event becomes a message for the app."""
        assert self._subscription is not None
        async for event in self._subscription:
            self.post_message(SessionEvent(event))

    @work(group="demo", exit_on_error=False)
    async def _seed_demo(self) -> None:
        from watui.demo import seed_demo

        try:
            await seed_demo(self.service)
        except WatuiError as exc:
            self.notify(f"Demo data: {exc.message}", severity="warning")

    def _link_changed(self, status: LinkStatus) -> None:
        """Attach mode: show the link; after a resync (events lost) re-read every session."""
        before = self.server_link
        self.server_link = status
        if before is not None and status.resyncs > before.resyncs:
            self._reload_all = True
            self._schedule_flush()

    # ================================================================ events → state

    def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        self.state.add_event(event)
        if event.type == EventType.DELETED:
            self._removed.add(event.session_id)
            self._dirty.discard(event.session_id)
        else:
            self._dirty.add(event.session_id)
        if _engine_crashed(event.type, event.payload):
            self._tell_engine_crash(event.session_id)
        # Screens that follow one session (QR, pairing code) react to its events at once.
        for screen in self.screen_stack:
            if getattr(screen, "session_id", None) == event.session_id:
                screen.post_message(SessionEvent(event))
        self._schedule_flush()

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

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._flushing:
            return
        self._flush_scheduled = True
        self.set_timer(self.refresh_interval, self._flush_sessions, name="flush-sessions")

    async def _flush_sessions(self) -> None:
        """Re-read the changed sessions and tell every screen, once per batch."""
        self._flush_scheduled = False
        self._flushing = True
        try:
            dirty, self._dirty = self._dirty, set()
            removed, self._removed = self._removed, set()
            everything, self._reload_all = len(dirty) > BULK_RELOAD or self._reload_all, False
            try:
                if everything:
                    page = await self.service.list_sessions(limit=None)
                    self.state.replace_all(page.sessions)
                else:
                    # Concurrently: over HTTP (attach mode) each read is a round trip.
                    ids = list(dirty)
                    reads = await asyncio.gather(*(self.service.get_session(i) for i in ids),
                                                 return_exceptions=True)
                    for session_id, read in zip(ids, reads, strict=True):
                        if isinstance(read, SessionNotFound):
                            removed.add(session_id)
                        elif isinstance(read, BaseException):
                            raise read
                        else:
                            self.state.put(read)
            except Exception:
                # The service is away (shutting down, or a server being restarted): keep what
                # is on screen, and read these sessions again in a while.
                log.warning("refreshing %d sessions failed", len(dirty), exc_info=True)
                self._dirty |= dirty
                self._removed |= removed
                self._reload_all |= everything
                self._flush_scheduled = True
                self.set_timer(FLUSH_RETRY, self._flush_sessions, name="flush-sessions-retry")
                return
            for session_id in removed:
                self.state.remove(session_id)
            self.flushes += 1
            message = StateChanged(frozenset(dirty - removed), frozenset(removed), everything)
            for screen in self.screen_stack:
                screen.post_message(message)
        finally:
            self._flushing = False
        if self._dirty or self._removed:
            self._schedule_flush()

    async def settle(self) -> None:
        """Apply every queued event now and redraw times (tests move a fake clock)."""
        if self._dirty or self._removed:
            await self._flush_sessions()
        self.refresh_times()

    def refresh_times(self) -> None:
        """Redraw countdowns and relative times on every screen, against the app's clock."""
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_times", None)
            if refresh is not None:
                refresh()

    @work(group="events", exit_on_error=False)
    async def _load_events(self, session_id: str) -> None:
        try:
            tail = await self.service.recent_events(session_id, limit=RECENT_EVENTS)
        except WatuiError:
            return
        self.state.seed_events(session_id, tail)
        message = StateChanged(frozenset({session_id}))
        for screen in self.screen_stack:
            screen.post_message(message)

    def refresh_deliveries(self, session_id: str) -> None:
        """(Re)load a session's latest webhook deliveries for its detail pane, at most once a second."""
        session = self.state.sessions.get(session_id)
        if session is None or session.settings.webhook_url is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._deliveries_loaded.get(session_id, -DELIVERIES_EVERY) < DELIVERIES_EVERY:
            return
        self._deliveries_loaded[session_id] = now
        self._load_deliveries(session_id)

    @work(group="deliveries", exclusive=True, exit_on_error=False)
    async def _load_deliveries(self, session_id: str) -> None:
        try:
            page = await self.service.list_webhook_deliveries(session_id, limit=6)
        except WatuiError:
            return
        self.state.deliveries[session_id] = page.deliveries
        message = StateChanged(frozenset({session_id}))
        for screen in self.screen_stack:
            screen.post_message(message)

    def ensure_events(self, session_id: str) -> None:
        """Load a session's past events for its detail pane, once."""
        if session_id not in self._events_loaded:
            self._events_loaded.add(session_id)
            self._load_events(session_id)

    def ensure_messages(self, session_id: str) -> None:
        """Read a session's latest messages for its detail pane, once; ``message`` events keep them current."""
        if self.state.follow_messages(session_id):
            self._load_messages(session_id)

    @work(group="messages", exit_on_error=False)
    async def _load_messages(self, session_id: str) -> None:
        try:
            page = await self.service.list_messages(session_id, limit=RECENT_MESSAGES)
        except WatuiError:
            self.state.forget_messages(session_id)  # gone, or not ours: the next look tries again
            return
        self.state.seed_messages(session_id, page.messages)
        message = StateChanged(frozenset({session_id}))
        for screen in self.screen_stack:
            screen.post_message(message)

    # ================================================================ helpers for screens

    @property
    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def current_session(self) -> Session | None:
        main = self.main_screen
        if main is None:
            return None
        session_id = main.table.current_id
        return self.state.sessions.get(session_id) if session_id else None

    def go_to_session(self, session_id: str) -> None:
        main = self.main_screen
        if main is None:
            return
        if main.table.index_of(session_id) is None and main.query_text:
            main.set_filter("")
        main.table.select(session_id)

    def focus_filter(self) -> None:
        main = self.main_screen
        if main is not None:
            main.action_filter()

    # ================================================================ actions

    async def _call(self, label: str, call: Awaitable[Any]) -> Any:
        """Await a service call; a refusal becomes an error toast with the service's words."""
        self.pending_actions += 1
        try:
            return await call
        except WatuiError as exc:
            self.notify(exc.message, title=f"{label} refused", severity="error", timeout=8)
            return None
        except Exception as exc:  # an engine bug must not take the console down
            log.exception("%s failed", label)
            self.notify(f"{type(exc).__name__}: {exc}", title=f"{label} failed", severity="error", timeout=8)
            return None
        finally:
            self.pending_actions -= 1

    def _session_name(self, session_id: str) -> str:
        session = self.state.sessions.get(session_id)
        return session.name if session else session_id

    def run_action_on(self, session_id: str, verb: str) -> None:
        """Start, stop, restart, log out or delete a session, in the background."""
        self._run_verb(session_id, verb)

    @work(group="actions", exit_on_error=False)
    async def _run_verb(self, session_id: str, verb: str) -> None:
        service = self.service
        name = self._session_name(session_id)
        calls: dict[str, Callable[[str], Awaitable[Any]]] = {
            "start": service.start,
            "stop": service.stop,
            "restart": service.restart,
            "logout": service.logout,
            "delete": service.delete,
        }
        verb_call: Callable[[str], Awaitable[Any]]
        if verb == "restart_or_start":
            session = self.state.sessions.get(session_id)
            verb_call = service.restart if session is not None and session.status in RUNNING else service.start
        else:
            verb_call = calls[verb]
        label = "Start" if verb == "restart_or_start" else verb.replace("_", " ").capitalize()
        result = await self._call(f"{label} {name!r}", verb_call(session_id))
        if result is None and verb != "delete":
            return
        if verb == "delete":
            # ``delete`` returns None on success too; the deleted event updates the table.
            if session_id in self.state.sessions:
                self._removed.add(session_id)
                self._schedule_flush()
        self.notify(f"{VERB_DONE.get(verb, verb)} {name!r}", timeout=3)

    def confirm_then(self, session_id: str, verb: str, title: str, question: str, yes: str) -> None:
        """Ask first, then run ``verb``; a no changes nothing."""

        def answered(yes_: bool | None) -> None:
            if yes_:
                self.run_action_on(session_id, verb)

        self.push_screen(ConfirmScreen(title, question, yes), answered)

    def stop_all(self) -> None:
        running = [s for s in self.state.sessions.values() if s.status in RUNNING or s.status == Status.DISCONNECTED]
        if not running:
            self.notify("No session is running.", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop_all([s.id for s in running])

        self.push_screen(
            ConfirmScreen("Stop all?", f"Stop {len(running)} running session{'s' if len(running) != 1 else ''}? "
                          "Their links are kept; start them again with s.", "Stop all"),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def _stop_all(self, ids: list[str]) -> None:
        """Stop in batches: many sessions at once, without one slow stop holding up the rest."""
        stopped = 0
        for start in range(0, len(ids), STOP_ALL_BATCH):
            batch = ids[start : start + STOP_ALL_BATCH]
            results = await asyncio.gather(*(
                self._call(f"Stop {self._session_name(i)!r}", self.service.stop(i)) for i in batch
            ))
            stopped += sum(result is not None for result in results)
        self.notify(f"Stopped {stopped} session{'s' if stopped != 1 else ''}", timeout=3)

    def new_session(self) -> None:
        existing = {s.name for s in self.state.sessions.values()}
        default = next(f"session-{n}" for n in range(1, len(existing) + 2) if f"session-{n}" not in existing)
        self.push_screen(NewSessionScreen(default), self._created)

    def _created(self, spec: SessionCreate | None) -> None:
        if spec is not None:
            self._create(spec)

    @work(group="actions", exit_on_error=False)
    async def _create(self, spec: SessionCreate) -> None:
        session = await self._call(f"Create {spec.name!r}", self.service.create_session(spec))
        if session is None:
            return
        self.state.put(session)
        self._dirty.add(session.id)
        self._schedule_flush()
        self.notify(f"Created {session.name!r}; starting it", timeout=3)
        if spec.link_method == LinkMethod.PHONE:
            await self.push_screen(PairCodeScreen(session.id, session.pair_code, session.pair_code_expires_at))
        elif session.status != Status.CONNECTED:
            await self.push_screen(QrScreen(session.id))

    def open_session(self, session_id: str) -> None:
        """``enter``: the QR code (or pairing code) while linking, the details otherwise."""
        session = self.state.sessions.get(session_id)
        if session is None:
            return
        linking = session.status in (Status.INITIALIZING, Status.QR_READY, Status.CONNECTING) and not session.linked
        if linking and (session.pair_code or session.link_method == LinkMethod.PHONE):
            self.push_screen(PairCodeScreen(session_id, session.pair_code, session.pair_code_expires_at))
        elif linking:
            self.push_screen(QrScreen(session_id))
        else:
            self.push_screen(DetailScreen(session_id))

    def open_pair_code(self, session_id: str, code: str | None, expires_at: datetime | None) -> None:
        """Show the pairing code screen once; it replaces that session's QR screen if on top."""
        for screen in self.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                if code and not screen.code:
                    screen.code, screen.expires_at = code, expires_at
                    screen.refresh_code()
                return
        pair = PairCodeScreen(session_id, code, expires_at)
        top = self.screen
        if isinstance(top, QrScreen) and top.session_id == session_id:
            top._dismissed = True
            self.switch_screen(pair)
        else:
            self.push_screen(pair)

    def link_by_phone(self, session_id: str) -> None:
        def answered(number: str | None) -> None:
            if number:
                self._request_pair_code(session_id, number)

        self.push_screen(PhonePrompt(self._session_name(session_id)), answered)

    @work(group="actions", exit_on_error=False)
    async def _request_pair_code(self, session_id: str, number: str) -> None:
        self.open_pair_code(session_id, None, None)
        code = await self._call(f"Pairing code for {self._session_name(session_id)!r}",
                                self.service.request_pair_code(session_id, number))
        if code is None:
            for screen in self.screen_stack:
                if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                    screen.close()
            return
        for screen in self.screen_stack:
            if isinstance(screen, PairCodeScreen) and screen.session_id == session_id:
                screen.code, screen.expires_at = code.code, code.expires_at
                screen.refresh_code()

    def compose_message(self, session_id: str) -> None:
        """``m``: the compose box for a connected session; any other status is told, not opened."""
        session = self.state.sessions.get(session_id)
        if session is None:
            return
        if session.status != Status.CONNECTED:
            self.notify(
                f"{session.name!r} is {STATUS_LOOKS[session.status].label}, not connected: only a connected "
                "session can send messages.",
                title="Cannot send", severity="warning", timeout=5,
            )
            return

        def composed(draft: Draft | None) -> None:
            if draft is not None:
                self._last_recipient = phone(draft.to)
                self._send_message(session_id, draft)

        self.push_screen(ComposeScreen(session.name, session.phone_number, self._last_recipient), composed)

    @work(group="actions", exit_on_error=False)
    async def _send_message(self, session_id: str, draft: Draft) -> None:
        """Send; the ``message`` event (sent or failed) puts it in the log, the toast says how it went."""
        name = self._session_name(session_id)
        self.pending_actions += 1
        try:
            message = await self.service.send_message(session_id, draft.to, draft.text)
        except EngineFailure as exc:
            # The manager stored the failed message too: it shows in the log with this reason.
            self.notify(exc.message, title=f"Message to {phone(draft.to)} failed", severity="error", timeout=8)
        except WatuiError as exc:
            self.notify(exc.message, title="Message not sent", severity="error", timeout=8)
        except Exception as exc:  # an engine bug must not take the console down
            log.exception("sending from %s failed", session_id)
            self.notify(f"{type(exc).__name__}: {exc}", title="Message not sent", severity="error", timeout=8)
        else:
            self.notify(f"From {name!r} to {phone(message.chat)}", title="Message sent", timeout=3)
        finally:
            self.pending_actions -= 1

    def simulate(self, session_id: str, action: str) -> None:
        self._simulate(session_id, action)

    @work(group="actions", exit_on_error=False)
    async def _simulate(self, session_id: str, action: str) -> None:
        await self._call(f"Demo {action}", self.service.simulate(session_id, SimulateRequest.model_validate({"action": action})))

    # ================================================================ app keys

    def action_hosts(self) -> None:
        if not isinstance(self.screen, HostsScreen):
            self.push_screen(HostsScreen())

    def action_help(self) -> None:
        if any(isinstance(s, HelpScreen) for s in self.screen_stack):
            return
        sections: list[tuple[str, list[Any]]] = [
            ("Sessions table", [*MainScreen.BINDINGS]),
            ("Moving around", [*self._table_bindings()]),
            ("QR screen", [*QrScreen.BINDINGS]),
            ("Pairing code screen", [*PairCodeScreen.BINDINGS]),
            ("Engine hosts", [*HostsScreen.BINDINGS]),
            ("Message box", [*ComposeScreen.BINDINGS,
                             Binding("enter", "send", "Send", tooltip="In the text field; in To, goes on to the text")]),
            ("Everywhere", [*self.BINDINGS,
                            Binding("ctrl+p", "command_palette", "Command palette",
                                    tooltip="Find a session or an action by name")]),
        ]
        self.push_screen(HelpScreen(sections))

    @staticmethod
    def _table_bindings() -> list[Any]:
        from watui.widgets.sessions_table import SessionsTable

        return list(SessionsTable.BINDINGS)

    async def action_quit(self) -> None:
        """Quit at once when nothing is in flight; ask first when an action is still running."""
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

    def get_system_commands(self, screen: Screen[Any]) -> Any:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New session", "Create a session and link a phone", self.new_session)


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


async def _run_console(settings: Settings, demo: bool) -> None:
    from watui.manager import SessionManager

    _log_to_file(settings)
    if settings.engine == "neonize":
        _keep_native_output_off_screen(settings.data_dir / "watui.log")
    manager = await SessionManager.open(settings)
    app = WatuiApp(manager, demo=demo, freeze_heap=True)
    loop = asyncio.get_running_loop()
    hangups: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(_hang_up(app, manager))
        hangups.add(task)
        task.add_done_callback(hangups.discard)

    for signum in (signal.SIGHUP, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_hangup)
    try:
        await app.run_async()
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
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
    from watui.datadir import DataDirUnusable
    from watui.logs import configure_logging

    try:
        settings.ensure_dirs()
        configure_logging(settings.log_format, filename=settings.data_dir / "watui.log")
    except OSError as exc:
        raise DataDirUnusable(f"cannot write to the data dir {settings.data_dir}: {exc.strerror}") from None
