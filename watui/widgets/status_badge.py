"""Status colours, badges and the small text formatters every screen shares.

One table of colours: the sessions table, the detail pane, the help legend and the QR screen
all draw a status the same way, so a colour means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.style import Style
from rich.text import Text

from watui.machine import Status
from watui.models import Session


@dataclass(frozen=True, slots=True)
class StatusLook:
    label: str
    icon: str
    background: str
    foreground: str
    meaning: str


STATUS_LOOKS: dict[Status, StatusLook] = {
    Status.CONNECTED: StatusLook("connected", "●", "#2e7d32", "#ffffff", "linked and online"),
    Status.QR_READY: StatusLook("qr ready", "▣", "#f9a825", "#000000", "waiting for the phone to scan or enter a code"),
    Status.INITIALIZING: StatusLook("starting", "◌", "#1565c0", "#ffffff", "opening the connection"),
    Status.CONNECTING: StatusLook("connecting", "◐", "#00838f", "#ffffff", "code accepted, setting up the link"),
    Status.DISCONNECTED: StatusLook("disconnected", "○", "#e65100", "#ffffff", "link kept, connection down (may reconnect)"),
    Status.FAILED: StatusLook("failed", "✖", "#c62828", "#ffffff", "gave up; see the reason, then start again"),
    Status.STOPPED: StatusLook("stopped", "■", "#546e7a", "#ffffff", "not running; start it with s"),
}

LOGGED_OUT_REASON = "logged_out"

PROXY_MARK = " ⇄"
"""After the name of a session that has a proxy of its own (``settings.proxy``), in the table."""

LOGGED_OUT = StatusLook("logged out", "⊘", "#6a1b9a", "#ffffff", "logged out — link again (start it for a new QR code)")
"""Not a status of its own (``disconnected`` with reason ``logged_out``), but not a drop
either: the link is gone and will not come back by itself, so it looks and reads apart."""

LEGEND: tuple[tuple[str, StatusLook], ...] = (
    *((status.value, look) for status, look in STATUS_LOOKS.items() if status != Status.DISCONNECTED),
    (Status.DISCONNECTED.value, STATUS_LOOKS[Status.DISCONNECTED]),
    ("logged_out", LOGGED_OUT),
)
"""Every look, in the order the help legend shows them."""


def logged_out(status: Status, reason: str | None) -> bool:
    return status == Status.DISCONNECTED and reason == LOGGED_OUT_REASON


def look_of(status: Status, reason: str | None = None) -> StatusLook:
    """How a session in ``status`` (for ``reason``) is drawn."""
    return LOGGED_OUT if logged_out(status, reason) else STATUS_LOOKS[status]


def session_look(session: Session) -> StatusLook:
    return look_of(session.status, session.reason)


BADGE_WIDTH = 16
"""Cells a badge takes in the table: the longest label plus icon and padding."""


def badge_style(look: StatusLook) -> Style:
    return Style(color=look.foreground, bgcolor=look.background, bold=True)


def status_badge(status: Status, *, width: int | None = BADGE_WIDTH, reason: str | None = None) -> Text:
    """`` ● connected `` on its status colour, padded to ``width`` cells."""
    return look_badge(look_of(status, reason), width=width)


def look_badge(look: StatusLook, *, width: int | None = BADGE_WIDTH) -> Text:
    body = f" {look.icon} {look.label} "
    if width is not None:
        body = body.ljust(width)[:width]
    return Text(body, style=badge_style(look), end="")


def session_badge(session: Session, *, width: int | None = BADGE_WIDTH) -> Text:
    return status_badge(session.status, width=width, reason=session.reason)


def ago(ts: datetime | None, now: datetime) -> str:
    """Compact relative time ("12s ago", "3m ago"), computed against the app's clock."""
    if ts is None:
        return "—"
    seconds = int((now - ts).total_seconds())
    if seconds < 0:
        return "just now" if seconds > -5 else until(ts, now)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def until(ts: datetime | None, now: datetime) -> str:
    """Time left until ``ts`` ("in 17s", "expired")."""
    if ts is None:
        return "—"
    seconds = int((ts - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 60:
        return f"in {seconds}s"
    return f"in {seconds // 60}m {seconds % 60:02d}s"


def seconds_left(ts: datetime | None, now: datetime) -> int:
    if ts is None:
        return 0
    return max(0, int((ts - now).total_seconds() + 0.999))


def phone(number: str | None) -> str:
    """``+14155550123`` for display; WhatsApp stores the digits without the plus."""
    return f"+{number}" if number else "—"


def stamp(ts: datetime | None) -> str:
    """Absolute UTC time, to the second."""
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "—"
