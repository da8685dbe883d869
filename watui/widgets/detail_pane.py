"""The detail pane: every field of the highlighted session, its settings and recent events.

Built from independent sections (``DetailSection`` subclasses) stacked in a scrollable
column, so a later section (a message log, a compose box) is one more widget in
``DetailPane.compose`` rather than a rewrite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from watui.machine import EventType
from watui.models import Event, Session
from watui.webhooks import DeliveryStatus, WebhookDelivery
from watui.widgets.status_badge import STATUS_LOOKS, ago, phone, stamp, status_badge, until


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def describe_event(event: Event) -> Text:
    """One line for an event: what happened, in words."""
    p = event.payload
    kind = event.type
    if kind == EventType.STATUS:
        frm, to = p.get("from") or "—", p.get("to") or "—"
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return Text.assemble(("status ", "bold"), f"{frm} → {to}{reason}")
    if kind == EventType.QR:
        return Text.assemble(("qr ", "bold"), f"code {p.get('generation', '?')} issued")
    if kind == EventType.PAIR_CODE:
        return Text.assemble(("pair code ", "bold"), str(p.get("code", "")))
    if kind == EventType.CONNECTED:
        who = p.get("push_name") or ""
        return Text.assemble(("connected ", "bold green"), f"{phone(p.get('phone_number'))} {who}".rstrip())
    if kind == EventType.DISCONNECTED:
        return Text.assemble(("disconnected ", "bold yellow"), str(p.get("reason") or ""))
    if kind == EventType.ERROR:
        return Text.assemble(("error ", "bold red"), str(p.get("message") or p.get("code") or ""))
    if kind == EventType.MESSAGE:
        arrow = "←" if p.get("direction") == "in" else "→"
        return Text.assemble(("message ", "bold"), f"{arrow} {p.get('chat', '')}: {p.get('text', '')}")
    if kind == EventType.DELETED:
        return Text("deleted", style="bold")
    return Text(str(kind))


@dataclass(frozen=True, slots=True)
class DetailContext:
    """Everything a section may draw: the snapshot, its recent events and webhook deliveries."""

    session: Session
    events: list[Event]
    now: datetime
    deliveries: list[WebhookDelivery] | None = None
    extra: dict[str, object] = field(default_factory=dict)


class DetailSection(Static):
    """One titled block of the pane; subclasses turn a :class:`DetailContext` into a renderable."""

    TITLE = ""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="detail-section")
        self.border_title = self.TITLE

    def applies(self, ctx: DetailContext) -> bool:
        """Whether to show this section at all for this session."""
        return True

    def render_session(self, ctx: DetailContext) -> RenderableType:
        raise NotImplementedError

    def show(self, ctx: DetailContext) -> None:
        self.display = self.applies(ctx)
        if self.display:
            self.update(self.render_session(ctx))


class FieldsSection(DetailSection):
    TITLE = "Session"

    def render_session(self, ctx: DetailContext) -> RenderableType:
        session, now = ctx.session, ctx.now
        grid = _grid()
        grid.add_row("Name", session.name)
        if session.description:
            grid.add_row("About", session.description)
        grid.add_row("Status", Text.assemble(status_badge(session.status, width=None),
                                             f"  {STATUS_LOOKS[session.status].meaning}"))
        if session.reason:
            grid.add_row("Reason", Text(session.reason, style="bold red" if session.status == "failed" else ""))
        grid.add_row("Phone", phone(session.phone_number))
        if session.push_name:
            grid.add_row("Push name", session.push_name)
        grid.add_row("Linked", "yes" if session.linked else "no")
        grid.add_row("Link method", "QR code" if session.link_method == "qr" else "phone number")
        if session.status == "qr_ready":
            if session.pair_code:
                grid.add_row("Pair code", f"{session.pair_code} (expires {until(session.pair_code_expires_at, now)})")
            else:
                grid.add_row("QR code", f"{session.qr_generation} (expires {until(session.qr_expires_at, now)})")
        grid.add_row("Messages", f"{session.messages_received} in, {session.messages_sent} out, "
                                 f"{session.messages_failed} failed")
        grid.add_row("Reconnects", f"{session.reconnect_count} total, {session.reconnect_attempts} in a row")
        grid.add_row("Last active", ago(session.last_activity_at, now))
        grid.add_row("Connected", stamp(session.connected_at))
        grid.add_row("Created", stamp(session.created_at))
        grid.add_row("Updated", stamp(session.updated_at))
        grid.add_row("Owner", session.owner)
        grid.add_row("Id", Text(session.id, style="dim"))
        return grid


class SettingsSection(DetailSection):
    TITLE = "Settings"

    def render_session(self, ctx: DetailContext) -> RenderableType:
        s = ctx.session.settings
        grid = _grid()
        grid.add_row("Auto-reconnect", f"{'on' if s.auto_reconnect else 'off'}, up to {s.max_reconnect_attempts} tries")
        grid.add_row("Webhook", str(s.webhook_url) if s.webhook_url else Text("none", style="dim"))
        if s.webhook_url:
            kinds = ", ".join(str(e) for e in s.webhook_events) if s.webhook_events else "all events"
            grid.add_row("Sends", kinds)
        return grid


class EventsSection(DetailSection):
    TITLE = "Recent events"

    def render_session(self, ctx: DetailContext) -> RenderableType:
        if not ctx.events:
            return Text("No events yet.", style="dim")
        lines: list[RenderableType] = []
        for event in reversed(ctx.events[-12:]):
            when = Text(f"{ago(event.timestamp, ctx.now):>9} ", style="dim")
            lines.append(Text.assemble(when, describe_event(event), overflow="ellipsis", no_wrap=True))
        return Group(*lines)


DELIVERY_LOOK: dict[DeliveryStatus, tuple[str, str]] = {
    DeliveryStatus.DELIVERED: ("✓", "green"),
    DeliveryStatus.PENDING: ("↻", "yellow"),
    DeliveryStatus.FAILED: ("✖", "red"),
    DeliveryStatus.DEAD: ("✖", "red"),
}


class WebhooksSection(DetailSection):
    """The latest webhook deliveries, so an admin sees a receiver that is down."""

    TITLE = "Webhook deliveries"

    def applies(self, ctx: DetailContext) -> bool:
        return ctx.session.settings.webhook_url is not None

    def render_session(self, ctx: DetailContext) -> RenderableType:
        if ctx.deliveries is None:
            return Text("Loading…", style="dim")
        if not ctx.deliveries:
            return Text("Nothing sent yet.", style="dim")
        lines: list[RenderableType] = []
        for delivery in ctx.deliveries[:6]:
            icon, colour = DELIVERY_LOOK.get(delivery.status, ("?", ""))
            line = Text.assemble((f"{icon} ", f"bold {colour}"), (f"{delivery.event_type} ", "bold"),
                                 f"#{delivery.event_id} ", overflow="ellipsis", no_wrap=True)
            if delivery.status == DeliveryStatus.DELIVERED:
                line.append(f"{delivery.last_status_code or ''} after {delivery.attempts} attempt(s), "
                            f"{ago(delivery.delivered_at, ctx.now)}", style="dim")
            else:
                reason = delivery.last_error or (f"HTTP {delivery.last_status_code}" if delivery.last_status_code else "")
                line.append(f"{delivery.status}: {reason}".rstrip(": "), style=colour)
                if delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at:
                    when = until(delivery.next_attempt_at, ctx.now)
                    line.append(f", next try {'due' if when == 'expired' else when}", style="dim")
            lines.append(line)
        return Group(*lines)


class DetailPane(VerticalScroll):
    """The highlighted session in full. ``show`` redraws every section from the view state."""

    DEFAULT_CSS = """
    DetailPane { padding: 0 1; }
    DetailPane > .detail-section { border: round $primary 40%; border-title-color: $text-accent; padding: 0 1; margin-bottom: 0; }
    DetailPane > #detail-empty { color: $text-muted; padding: 1 1; }
    """

    can_focus = False

    def __init__(self, now: Callable[[], datetime], *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._now = now
        self.session_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Highlight a session to see its details.", id="detail-empty")
        yield FieldsSection(id="detail-fields")
        yield SettingsSection(id="detail-settings")
        yield WebhooksSection(id="detail-webhooks")
        yield EventsSection(id="detail-events")

    def show(self, session: Session | None, events: list[Event],
             deliveries: list[WebhookDelivery] | None = None) -> None:
        self.session_id = session.id if session else None
        self.query_one("#detail-empty").display = session is None
        ctx = DetailContext(session, events, self._now(), deliveries) if session is not None else None
        for section in self.query(DetailSection):
            if ctx is None:
                section.display = False
            else:
                section.show(ctx)
