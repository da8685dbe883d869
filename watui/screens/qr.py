"""The QR screen: the live code for one session, replaced in place as WhatsApp rotates it.

It follows one session's events (forwarded by the app): a new ``qr`` event swaps the code, a
``connected`` closes the screen with a success toast, a failure shows the reason and offers a
retry.

The code is drawn as big as the terminal allows: half blocks, else quadrants, else sextants
(:data:`watui.qr.BLOCK_MODES`), each tried with the text above and below it, then with the
text beside it. So WhatsApp's code is drawn in half blocks at 120×40 and in sextants, text
beside, at 80×24. When even that does not fit, the screen says how big the terminal must be
and offers linking by phone number instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle, Vertical
from textual.content import Content
from textual.widgets import Static

from watui.console import requests as ask
from watui.console.verbs import Verb
from watui.errors import QrNotAvailable, WatuiError
from watui.machine import EventType, Status
from watui.qr import BLOCK_MODES, SEXTANT, BlockMode
from watui.screens.common import FollowerScreen, linked_notice
from watui.widgets.footer import FittingFooter
from watui.widgets.messages import SessionEvent, StateChanged
from watui.widgets.qr_view import QrView
from watui.widgets.status_badge import seconds_left, session_badge
from watui.widgets.text import clean, one_line

CHROME_LINES = 3
"""Lines the screen needs besides the code and the status (which wraps): title, notice, footer."""

HOW_TO_SCAN = "WhatsApp → Settings → Linked devices → Link a device, then scan."

CODE_MARGIN = 2
"""Columns around the code, one on each side."""

BESIDE_COLUMNS = 30
"""Columns the text needs beside the code (title, countdown, how to scan, notices), wrapped."""

BESIDE_CHROME_LINES = 1
"""Lines the screen needs besides the code when the text is beside it: the footer."""


@dataclass(frozen=True, slots=True)
class Layout:
    """One way to draw the code: its grain, the text beside it or not, the terminal it needs."""

    mode: BlockMode
    beside: bool
    need: tuple[int, int]


def layouts(payload: str, status_lines: int) -> Iterator[Layout]:
    """Every layout, best first: coarser grains before finer, text stacked before beside.

    ``status_lines``: the lines the status takes under the code, at the terminal's width.
    """
    for mode in BLOCK_MODES:
        cols, lines = QrView.size_needed(payload, mode)
        yield Layout(mode, False, (cols + CODE_MARGIN, lines + CHROME_LINES + status_lines))
        yield Layout(mode, True, (cols + CODE_MARGIN + BESIDE_COLUMNS, lines + BESIDE_CHROME_LINES))


def _parse_ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class QrScreen(FollowerScreen):
    """Full-screen QR code for linking one session's phone."""

    # ``.-beside``: the code docked left, the title and status in the columns to its right.
    CSS = """
    QrScreen.-beside #qr-middle { dock: left; width: auto; height: 100%; padding: 0 1; }
    QrScreen.-beside #qr-middle Center { width: auto; }
    QrScreen.-beside #qr-title { height: auto; }
    QrScreen.-beside .link-status { text-align: left; }
    QrScreen #qr-message { max-width: 100%; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="qr.back", tooltip="Back to the sessions (linking goes on)"),
        Binding("r", "retry", "Retry", id="qr.retry", tooltip="Start pairing again with fresh codes"),
        Binding("p", "link_phone", "Link by phone", id="qr.phone", tooltip="Get an 8-character code to type on the phone instead"),
        Binding("c", "demo_scan", "DEMO: scan", id="qr.demo_scan", tooltip="Demo only: play the phone scanning this code"),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id, classes="link-screen")
        self.qr_text: str | None = None
        self.generation = 0
        self.attempt = 1
        self.expires_at: datetime | None = None
        self.failure: str | None = None
        self.scanned = False

    def compose(self) -> ComposeResult:
        with Vertical(id="qr-body"):
            yield Static("", id="qr-title", classes="link-title")
            with Middle(id="qr-middle"):
                with Center():
                    yield QrView(id="qr-code")
                with Center():
                    yield Static("", id="qr-message")
            yield Static("", id="qr-status", classes="link-status")
            yield Static("", id="qr-notice", classes="link-status")
        yield FittingFooter()

    # -- state ------------------------------------------------------------------------

    @property
    def session(self) -> Any:
        return self.wapp.state.sessions.get(self.session_id)

    @property
    def codes_per_attempt(self) -> int:
        return int(getattr(self.app, "codes_per_attempt", 6))

    def on_mount(self) -> None:
        session = self.session
        if session is not None and session.status == Status.FAILED:
            self.failure = session.reason or "pairing failed"
        self._load_code()
        self._draw()
        self.set_interval(1.0, self.refresh_times, name="qr-countdown")

    @work(exclusive=True, group="qr-load")
    async def _load_code(self) -> None:
        try:
            code = await self.wapp.service.get_qr(self.session_id)
        except QrNotAvailable:
            return
        except WatuiError:
            return
        if self.qr_text is None:
            self._show_code(code.qr_text, code.generation, code.expires_at, code.attempt)

    def _show_code(self, qr_text: str, generation: int, expires_at: datetime | None, attempt: int = 1) -> None:
        self.qr_text = qr_text
        self.generation = generation
        self.attempt = attempt
        self.expires_at = expires_at
        self.failure = None
        self.scanned = False
        self._draw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_scan":
            return bool(getattr(self.wapp.service, "simulated", False))
        return True

    def _can_retry(self) -> bool:
        session = self.session
        return self.failure is not None or (
            session is not None and session.status in (Status.FAILED, Status.STOPPED, Status.DISCONNECTED)
        )

    def show_notice(self, title: str, message: str, severity: str) -> None:
        """Toasts would cover the code's corner: here they are a line under it instead."""
        style = {"error": "bold red", "warning": "bold yellow"}.get(severity, "bold")
        line = Text()
        if title:
            line.append(f"{title}: ", style=style)
        line.append(" ".join(message.split()), style=style if not title else "")
        self.query_one("#qr-notice", Static).update(line)

    # -- drawing ----------------------------------------------------------------------

    def code_layout(self) -> Layout | None:
        """The best layout that fits the terminal; None if none does (or there is no code)."""
        if self.qr_text is None:
            return None
        width, height = self.size
        every = layouts(self.qr_text, self._status_lines(width))
        return next((each for each in every if width >= each.need[0] and height >= each.need[1]), None)

    def _status_lines(self, width: int) -> int:
        """Lines the status takes under the code at ``width`` columns. Measured on the longest
        it gets (a later round, an expired code), so the grain stays put as the countdown runs."""
        n = self.codes_per_attempt
        longest = f"Code {n}/{n} (round 99)  ·  expired, next code coming  ·  {HOW_TO_SCAN}"
        return len(Content(longest).wrap(max(1, width - 2)))  # .link-status pads 1 on each side

    def fits(self) -> tuple[bool, tuple[int, int]]:
        """Whether the code fits the terminal, and the terminal size it needs: the chosen
        layout's, or when none fits, the narrowest (sextants, text stacked)."""
        if self.qr_text is None:
            return True, (0, 0)
        chosen = self.code_layout()
        if chosen is not None:
            return True, chosen.need
        return False, self._smallest()[0].need

    def _smallest(self) -> tuple[Layout, Layout]:
        """The finest grain's two layouts: text stacked (narrowest), text beside (shortest).
        The stacked one at this terminal's width, or the code's if that is wider."""
        assert self.qr_text is not None
        width = max(self.size.width, QrView.size_needed(self.qr_text, SEXTANT)[0] + CODE_MARGIN)
        stacked, beside = (each for each in layouts(self.qr_text, self._status_lines(width)) if each.mode == SEXTANT)
        return stacked, beside

    def _draw(self) -> None:
        session = self.session
        name = session.name if session else self.session_id
        title = Text.assemble(("Link a phone  ", "bold"), (clean(name), "bold"))
        if session is not None:
            title.append("  ")
            title.append_text(session_badge(session, width=None))
        if self.wapp.service.simulated:
            title.append("  DEMO", style="bold reverse")
        self.query_one("#qr-title", Static).update(title)

        view = self.query_one(QrView)
        message = self.query_one("#qr-message", Static)
        chosen = self.code_layout()
        if self.failure:
            view.display = False
            message.update(Text.assemble(("Pairing failed\n", "bold red"), (one_line(self.failure), "red"),
                                         ("\n\nPress r to try again, escape to go back.", "")))
        elif self.scanned or (session is not None and session.status == Status.CONNECTING):
            view.display = False
            message.update(Text("Code scanned. Linking the phone…", style="bold"))
        elif self.qr_text is None:
            view.display = False
            message.update(Text("Waiting for WhatsApp to issue a QR code…", style="dim"))
        elif chosen is None:
            view.display = False
            stacked, beside = self._smallest()
            message.update(Text.assemble(
                ("The terminal is too small for the QR code.\n", "bold"),
                f"It needs {stacked.need[0]}×{stacked.need[1]} cells (or {beside.need[0]}×{beside.need[1]}); "
                f"this one is {self.size.width}×{self.size.height}.\n",
                "Enlarge the window (or zoom out), or press ", ("p", "bold"), " to link by phone number instead.",
            ))
        else:
            view.display = True
            view.show(self.qr_text, chosen.mode)
            message.update("")
        # Messages are always stacked; the code has the text beside it where that fits best.
        self.set_class(view.display and chosen is not None and chosen.beside, "-beside")
        self._draw_status()

    def refresh_times(self) -> None:
        """The countdown to the code's expiry."""
        self._draw_status()

    def _draw_status(self) -> None:
        status = Text()
        if self.qr_text and not self.failure and not self.scanned:
            left = seconds_left(self.expires_at, self.wapp.now())
            status.append(f"Code {self.generation}/{self.codes_per_attempt}", style="bold")
            if self.attempt > 1:
                status.append(f" (round {self.attempt})")
            status.append("  ·  ")
            status.append(f"expires in {left}s" if left else "expired, next code coming", style="bold" if left > 5 else "bold red")
            if self.query_one(QrView).display:  # how to scan, while there is a code to scan
                status.append("\n" if self.has_class("-beside") else "  ·  ")
                status.append(HOW_TO_SCAN)
        self.query_one("#qr-status", Static).update(status)

    def on_resize(self) -> None:
        self._draw()

    # -- events -----------------------------------------------------------------------

    def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        if event.session_id != self.session_id:
            return
        payload = event.payload
        if event.type == EventType.QR:
            self._show_code(str(payload["qr_text"]), int(payload.get("generation", 0)),
                            _parse_ts(payload.get("expires_at")), int(payload.get("attempt") or 1))
        elif event.type == EventType.CONNECTED:
            linked_notice(self.app, self.session_id, payload)
            self.close()
        elif event.type == EventType.ERROR:
            self.failure = str(payload.get("message") or payload.get("code") or "pairing failed")
            self._draw()
            self.refresh_bindings()
        elif event.type == EventType.STATUS:
            to = payload.get("to")
            if to == Status.CONNECTING:
                self.scanned = True
            elif to == Status.FAILED:
                self.failure = str(payload.get("reason") or "pairing failed")
            elif to in (Status.STOPPED, Status.DISCONNECTED):
                self.qr_text = None
                self.failure = f"The session is {to} ({payload.get('reason') or 'stopped'})."
            elif to == Status.INITIALIZING:
                self.failure = None
                self.qr_text = None
            self._draw()
            self.refresh_bindings()
        elif event.type == EventType.PAIR_CODE:
            # Linking by phone number instead: the pairing code screen takes this one's place.
            self.post_message(ask.ShowPairCode(self.session_id, payload.get("code"),
                                               _parse_ts(payload.get("expires_at"))))

    def on_state_changed(self, message: StateChanged) -> None:
        if self.session_id in message.removed:
            self.close()
        elif message.everything or self.session_id in message.changed:
            self._draw()  # the status badge in the title

    # -- actions ----------------------------------------------------------------------

    def action_retry(self) -> None:
        if not self._can_retry():
            self.show_notice("Retry", "The code on screen is still live: r starts over only once linking has "
                             "failed or stopped. Scan it, wait for the next one, or press p to link by "
                             "phone number.", "warning")
            return
        self.failure = None
        self.qr_text = None
        self._draw()
        self.post_message(ask.RunVerb((self.session_id,), Verb.RESTART_OR_START))

    def action_link_phone(self) -> None:
        self.post_message(ask.LinkByPhone(self.session_id))

    def action_demo_scan(self) -> None:
        self.post_message(ask.Simulate(self.session_id, "scan"))
