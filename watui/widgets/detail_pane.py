"""The detail pane: every field of the highlighted session, its settings, messages and recent events.

Built from independent sections (``DetailSection`` subclasses) stacked in a scrollable
column, so a later section (a message log, a compose box) is one more widget in
``DetailPane.compose`` rather than a rewrite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from watui.machine import EventType, Status
from watui.models import Event, MessageDirection, MessageStats, MessageStatus, Session, mask_url
from watui.webhooks import DeliveryStatus, WebhookDelivery
from watui.widgets.activity import sparkline
from watui.widgets.state import LoggedMessage
from watui.widgets.status_badge import ago, phone, session_badge, session_look, stamp, until
from watui.widgets.text import clean, one_line, plain


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def party(chat: str) -> str:
    """The other side of a chat: ``+14155550100`` for a number (as panes and logs all show a
    phone number), a group's JID as it is."""
    return clean(chat) if "@" in chat else clean(phone(chat))


MESSAGE_LOOK: dict[str, str] = {
    MessageStatus.SENT: "green",
    MessageStatus.DELIVERED: "green",
    MessageStatus.READ: "bold green",
    MessageStatus.RECEIVED: "cyan",
    MessageStatus.FAILED: "bold red",
}


def describe_event(event: Event) -> Text:
    """One line for an event: what happened, in words."""
    p = event.payload
    kind = event.type
    if kind == EventType.STATUS:
        frm, to = p.get("from") or "—", p.get("to") or "—"
        reason = f" ({clean(str(p['reason']))})" if p.get("reason") else ""
        return Text.assemble(("status ", "bold"), f"{frm} → {to}{reason}")
    if kind == EventType.QR:
        return Text.assemble(("qr ", "bold"), f"code {p.get('generation', '?')} issued")
    if kind == EventType.PAIR_CODE:
        number = p.get("phone_number")
        return Text.assemble(("pair code ", "bold"), clean(str(p.get("code", ""))),
                             f" for {phone(str(number))}" if number else "")
    if kind == EventType.CONNECTED:
        who = clean(str(p.get("push_name") or ""))
        return Text.assemble(("connected ", "bold green"), f"{phone(p.get('phone_number'))} {who}".rstrip())
    if kind == EventType.DISCONNECTED:
        return Text.assemble(("disconnected ", "bold yellow"), clean(str(p.get("reason") or "")))
    if kind == EventType.ERROR:
        return Text.assemble(("error ", "bold red"), one_line(str(p.get("message") or p.get("code") or "")))
    if kind == EventType.MESSAGE:
        arrow = "←" if p.get("direction") == "in" else "→"
        line = Text.assemble(("message ", "bold"), f"{arrow} {party(str(p.get('chat') or ''))}: "
                                                   f"{one_line(str(p.get('text') or ''))}")
        if p.get("status") == MessageStatus.FAILED:
            line.append(f"  [failed{': ' + one_line(str(p['error'])) if p.get('error') else ''}]", style="red")
        return line
    if kind == EventType.MESSAGE_STATUS:
        status = clean(str(p.get("status") or "?"))
        line = Text.assemble(("message status ", "bold"), (status, MESSAGE_LOOK.get(status, "")),
                             f" → {party(str(p.get('chat') or ''))}")
        if p.get("message_id"):
            line.append(f"  {clean(str(p['message_id']))}", style="dim")
        return line
    if kind == EventType.DELETED:
        return Text("deleted", style="bold")
    return Text(clean(str(kind)))


@dataclass(frozen=True, slots=True)
class DetailContext:
    """Everything a section may draw: the snapshot, its recent events, webhook deliveries and messages.

    ``deliveries`` and ``messages`` are ``None`` while they are still being read.
    """

    session: Session
    events: list[Event]
    now: datetime
    deliveries: list[WebhookDelivery] | None = None
    messages: list[LoggedMessage] | None = None
    send_key: str | None = None
    """The key that sends a message from where the pane is shown, if there is one."""
    extra: dict[str, object] = field(default_factory=dict)
    stats: MessageStats | None = None
    """The session's message statistics over the last days (``None`` while being read)."""


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


def phone_and_platform(session: Session) -> Text:
    """The number, and the phone's platform once the engine said it (``+1555… · android``):
    on the number's line, so the pane stays as short at 80×24."""
    number = Text(phone(session.phone_number), end="")
    platform = session.connection.platform if session.connection is not None else None
    if platform:
        number.append(" · ").append(clean(platform), style="dim")
    return number


class FieldsSection(DetailSection):
    TITLE = "Session"

    def render_session(self, ctx: DetailContext) -> RenderableType:
        session, now = ctx.session, ctx.now
        grid = _grid()
        grid.add_row("Name", plain(session.name))
        if session.description:
            grid.add_row("About", plain(session.description))
        grid.add_row("Status", Text.assemble(session_badge(session, width=None),
                                             f"  {session_look(session).meaning}"))
        if session.reason:
            grid.add_row("Reason", plain(session.reason, style="bold red" if session.status == "failed" else ""))
        if session.node_id:
            grid.add_row("Node", plain(session.node_id))
        grid.add_row("Phone", phone_and_platform(session))
        if session.push_name:
            grid.add_row("Push name", plain(session.push_name))
        if session.connection is not None and session.connection.business_name:
            grid.add_row("Business", plain(session.connection.business_name))
        grid.add_row("Linked", "yes" if session.linked else "no")
        grid.add_row("Link method", "QR code" if session.link_method == "qr" else "phone number")
        if session.status == "qr_ready":
            if session.pair_code:
                grid.add_row("Pair code", f"{session.pair_code} (expires {until(session.pair_code_expires_at, now)})")
            else:
                grid.add_row("QR code", f"{session.qr_generation} (expires {until(session.qr_expires_at, now)})")
        grid.add_row("Messages", f"{session.messages_received} in, {session.messages_sent} out, "
                                 f"{session.messages_failed} failed")
        if ctx.stats is not None and ctx.stats.by_day:
            days = list(ctx.stats.by_day.values())
            today = days[-1]
            grid.add_row("Today", f"{today.received} in, {today.sent} out")
            week_in, week_out = sum(d.received for d in days), sum(d.sent for d in days)
            grid.add_row(f"{len(days)} days", Text.assemble(
                f"{week_in} in, {week_out} out ", (sparkline([d.sent + d.received for d in days]), "#29b6f6"),
            ))
        grid.add_row("Reconnects", f"{session.reconnect_count} total, {session.reconnect_attempts} in a row")
        grid.add_row("Last active", ago(session.last_activity_at, now))
        grid.add_row("Connected", stamp(session.connected_at))
        grid.add_row("Created", stamp(session.created_at))
        grid.add_row("Updated", stamp(session.updated_at))
        grid.add_row("Owner", plain(session.owner))
        grid.add_row("Id", Text(session.id, style="dim"))
        return grid


class SettingsSection(DetailSection):
    TITLE = "Settings"

    def render_session(self, ctx: DetailContext) -> RenderableType:
        s = ctx.session.settings
        grid = _grid()
        grid.add_row("Auto-reconnect", f"{'on' if s.auto_reconnect else 'off'}, up to {s.max_reconnect_attempts} tries")
        grid.add_row("Webhook", plain(mask_url(s.webhook_url)) if s.webhook_url else Text("none", style="dim"))
        if s.webhook_url:
            kinds = ", ".join(str(e) for e in s.webhook_events) if s.webhook_events else "all events"
            grid.add_row("Sends", kinds)
        if s.proxy:
            grid.add_row("Proxy", plain(mask_url(s.proxy)))
        if not s.message_history:
            # Shown only when off, the exception: the pane stays short at 80×24.
            grid.add_row("History", Text("off: message texts are not kept", style="yellow"))
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


class MessageLog:
    """A session's latest messages, newest first, laid out for the width they are given.

    Wide (the full-screen details): one line per message. Narrow (the pane beside the table):
    who, status and time on one line, the text under it, and a failed send's error under that.
    The text is cut with an ellipsis to fit; an error is never cut, it is the point of the line.
    """

    WIDE = 64
    """Cells from which one line per message leaves the text enough room."""

    def __init__(self, messages: list[LoggedMessage], now: datetime) -> None:
        self.messages = messages
        self.now = now

    @staticmethod
    def _arrow(message: LoggedMessage) -> Text:
        if message.direction == MessageDirection.IN:
            return Text("←", style="bold cyan")
        return Text("→", style="bold red" if message.status == MessageStatus.FAILED else "bold green")

    @staticmethod
    def _status(message: LoggedMessage) -> Text:
        look = MESSAGE_LOOK.get(message.status, "")
        if message.status == MessageStatus.FAILED and message.error:
            return Text(f"failed: {one_line(message.error)}", style=look)
        return Text(str(message.status), style=look)

    @staticmethod
    def _body(message: LoggedMessage) -> Text:
        # One line per message: a text's own line breaks would break the layout.
        return Text(one_line(message.text), no_wrap=True, overflow="ellipsis")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        newest_first = list(reversed(self.messages))
        if options.max_width >= self.WIDE:
            yield self._wide(newest_first, options.max_width)
            return
        for message in newest_first:
            yield from self._narrow(message)

    def _wide(self, messages: list[LoggedMessage], width: int) -> Table:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True, justify="right", style="dim", min_width=8)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(max_width=max(12, width // 3), overflow="fold")
        for message in messages:
            grid.add_row(ago(message.timestamp, self.now), self._arrow(message), Text(party(message.chat)),
                         self._body(message), self._status(message))
        return grid

    def _narrow(self, message: LoggedMessage) -> Iterator[RenderableType]:
        head = Table.grid(padding=(0, 1), expand=True)
        head.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        head.add_column(no_wrap=True, justify="right", style="dim")
        who = Text.assemble(self._arrow(message), " ", party(message.chat), " ",
                            (str(message.status), MESSAGE_LOOK.get(message.status, "")))
        head.add_row(who, ago(message.timestamp, self.now))
        yield head
        yield Text.assemble("  ", self._body(message), no_wrap=True, overflow="ellipsis")
        if message.status == MessageStatus.FAILED and message.error:
            # Wrapped, and under the text rather than the margin.
            error = Table.grid(padding=(0, 1, 0, 0))
            error.add_column(width=1)
            error.add_column(no_wrap=True, style="red")
            error.add_column(ratio=1, style="red", overflow="fold")
            error.add_row("", "✖", plain(message.error))
            yield error


class MessagesSection(DetailSection):
    """The session's latest messages, kept current from ``message`` events."""

    TITLE = "Messages"

    @staticmethod
    def _can_send(ctx: DetailContext) -> bool:
        return ctx.send_key is not None and ctx.session.status == Status.CONNECTED

    def show(self, ctx: DetailContext) -> None:
        # The key to send one, where it works.
        self.border_subtitle = f"{ctx.send_key}: send" if self._can_send(ctx) else ""
        super().show(ctx)

    def render_session(self, ctx: DetailContext) -> RenderableType:
        if ctx.messages is None:
            return Text("Loading…", style="dim")
        if not ctx.messages:
            hint = f" Press {ctx.send_key} to send a test message." if self._can_send(ctx) else ""
            return Text(f"No messages yet.{hint}", style="dim")
        return MessageLog(ctx.messages, ctx.now)


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
                reason = one_line(delivery.last_error) or (f"HTTP {delivery.last_status_code}" if delivery.last_status_code else "")
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

    def __init__(self, now: Callable[[], datetime], *, send_key: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._now = now
        self.send_key = send_key
        self.session_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Highlight a session to see its details.", id="detail-empty")
        yield FieldsSection(id="detail-fields")
        yield SettingsSection(id="detail-settings")
        yield WebhooksSection(id="detail-webhooks")
        yield MessagesSection(id="detail-messages")
        yield EventsSection(id="detail-events")

    def show(self, session: Session | None, events: list[Event],
             deliveries: list[WebhookDelivery] | None = None,
             messages: list[LoggedMessage] | None = None) -> None:
        """Redraw for ``session``; ``messages`` not given are read from the console's state."""
        self.session_id = session.id if session else None
        self.query_one("#detail-empty").display = session is None
        if session is not None and messages is None:
            messages = self._messages_in_state(session.id)
        ctx = (DetailContext(session, events, self._now(), deliveries, messages, self.send_key,
                             stats=self._stats_in_state(session.id))
               if session is not None else None)
        for section in self.query(DetailSection):
            if ctx is None:
                section.display = False
            else:
                section.show(ctx)

    def _stats_in_state(self, session_id: str) -> MessageStats | None:
        stats = getattr(getattr(self.app, "state", None), "stats", None)
        return stats.get(session_id) if isinstance(stats, dict) else None

    def _messages_in_state(self, session_id: str) -> list[LoggedMessage] | None:
        # Screens that show a pane without passing its messages (the full-screen details) still
        # get the log the app keeps; outside the console app there is none.
        state = getattr(self.app, "state", None)
        messages_of = getattr(state, "messages_of", None)
        return messages_of(session_id) if messages_of is not None else None
