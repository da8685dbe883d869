"""The new-session modal: name, description, link method and settings, then create + start.

The form stays open until the session exists: a refusal from the service (a name already
taken) is shown on its field, in plain words, with everything typed kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static

from watui.console import requests as ask
from watui.models import LinkMethod, SessionCreate, SessionSettings
from watui.widgets.footer import FittingFooter

FIELDS = {"name": "name", "description": "description", "phone_number": "phone", "webhook_url": "webhook",
          "proxy": "proxy"}
"""Where a problem with a request field is shown (the form's field ids, without ``new-``)."""


def plain_words(error: dict[str, Any]) -> str:
    """A pydantic error as a person would say it."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if kind == "string_too_short" or (kind == "missing"):
        return "needed"
    if kind == "string_too_long":
        size = f" (this one has {len(given)})" if isinstance(given, str) else ""
        return f"at most {ctx.get('max_length')} characters{size}"
    if kind.startswith("url"):
        return "not a web address; it looks like https://example.com/hooks"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Each problem by the form field it belongs to (``""``: the form as a whole)."""
    out: dict[str, str] = {}
    for error in exc.errors():
        names = [str(part) for part in error.get("loc", ()) if part != "settings"]
        field = FIELDS.get(names[-1], "") if names else ""
        out.setdefault(field, plain_words(dict(error)))
    return out


def first_error(exc: ValidationError) -> str:
    """The first validation problem, phrased for a person ("name: ...")."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "settings")
    message = plain_words(dict(error))
    return f"{where.replace('_', ' ')}: {message}" if where else message


class NewSessionScreen(ModalScreen[None]):
    """Posts :class:`~watui.console.requests.CreateSession`; the app answers ``created`` or ``refused``."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new.cancel", tooltip="Close without creating anything"),
        Binding("ctrl+s", "create", "Create", id="new.create", tooltip="Create and start the session"),
        # Enter creates from any field (a checkbox or the link method too); space toggles those.
        Binding("enter", "create", "Create", id="new.create_enter", show=False, priority=True,
                tooltip="Create and start the session"),
    ]

    def __init__(self, default_name: str = "") -> None:
        super().__init__(classes="modal")
        self.default_name = default_name
        self.sending = False

    def compose(self) -> ComposeResult:
        with Vertical(id="new-dialog", classes="dialog"):
            yield Static("New session", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                # No max_length: a long name is refused in words, not silently cut.
                yield Input(self.default_name, placeholder="e.g. sales-desk", id="new-name", compact=True)
            yield Static("", id="new-name-error", classes="field-error")
            with Horizontal(classes="field"):
                yield Label("Description", classes="field-label")
                yield Input(placeholder="optional: what this number is for", id="new-description", compact=True)
            yield Static("", id="new-description-error", classes="field-error")
            with Horizontal(classes="field"):
                yield Label("Link with", classes="field-label")
                with RadioSet(id="new-method", compact=True):
                    yield RadioButton("QR code, scanned with the phone", value=True, id="method-qr")
                    yield RadioButton("Phone number, a code typed on the phone", id="method-phone")
            with Horizontal(classes="field", id="new-phone-row"):
                yield Label("Phone number", classes="field-label")
                yield Input(placeholder="+14155550123", id="new-phone", compact=True)
            yield Static("", id="new-phone-error", classes="field-error")
            with Horizontal(classes="field"):
                yield Label("Reconnect", classes="field-label")
                yield Checkbox("automatically when the connection drops", True, id="new-reconnect",
                               compact=True)
            with Horizontal(classes="field"):
                yield Label("Webhook URL", classes="field-label")
                yield Input(placeholder="optional: https://example.com/hooks/whatsapp", id="new-webhook",
                            compact=True)
            yield Static("", id="new-webhook-error", classes="field-error")
            with Horizontal(classes="field"):
                yield Label("Proxy", classes="field-label")
                # The password is typed here, like a webhook URL's; the session shows it masked.
                yield Input(placeholder="optional: socks5://user:pass@host:1080", id="new-proxy", compact=True)
            yield Static("", id="new-proxy-error", classes="field-error")
            yield Static("", id="new-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Create (enter)", id="create", variant="primary")
        yield FittingFooter()

    def on_mount(self) -> None:
        self.query_one("#new-phone-row").display = False
        tune = getattr(self.app, "tune_inputs", None)
        if tune is not None:
            tune(self)
        for error in self.query(".field-error"):
            error.display = False
        self.query_one("#new-name", Input).focus()

    @property
    def link_method(self) -> LinkMethod:
        pressed = self.query_one(RadioSet).pressed_button
        return LinkMethod.PHONE if pressed is not None and pressed.id == "method-phone" else LinkMethod.QR

    @on(RadioSet.Changed)
    def _method_changed(self) -> None:
        wanted = self.link_method == LinkMethod.PHONE
        self.query_one("#new-phone-row").display = wanted
        if wanted:
            self.query_one("#new-phone", Input).focus()

    def build(self) -> SessionCreate:
        """The form as a request; raises ``ValidationError`` with what is wrong."""
        value = lambda wid: self.query_one(wid, Input).value.strip()  # noqa: E731
        method = self.link_method
        settings = SessionSettings.model_validate({
            "auto_reconnect": self.query_one("#new-reconnect", Checkbox).value,
            "webhook_url": value("#new-webhook") or None,
            "proxy": value("#new-proxy") or None,
        })
        return SessionCreate.model_validate({
            "name": value("#new-name"),
            "description": value("#new-description"),
            "settings": settings,
            "start": True,
            "link_method": method,
            "phone_number": (value("#new-phone") or None) if method == LinkMethod.PHONE else None,
        })

    # -- errors on their fields ---------------------------------------------------------

    def show_errors(self, errors: dict[str, str]) -> None:
        """Each message under its field (``""``: under the form); the first bad field gets focus."""
        focus: Input | None = None
        for field in ("name", "description", "phone", "webhook", "proxy"):
            box = self.query_one(f"#new-{field}-error", Static)
            message = errors.get(field)
            box.display = message is not None
            box.update(Text(f"↑ {message}") if message else "")
            if message and focus is None:
                focus = self.query_one(f"#new-{field}", Input)
        self.query_one("#new-error", Static).update(Text(errors.get("", "")))
        if focus is not None:
            focus.focus()

    def refused(self, reason: str) -> None:
        """The service said no: say why on the field it is about, keep everything typed."""
        self.sending = False
        self.query_one("#create", Button).disabled = False
        field = "name" if "name" in reason.casefold() else ""
        self.show_errors({field: reason})

    def created(self) -> None:
        self.dismiss(None)

    # -- submit -------------------------------------------------------------------------

    def action_create(self) -> None:
        # Keys typed before this Enter may still wait in the focused field's own queue (a fast
        # typist, a paste, a laggy SSH link): submit from that queue, after them.
        target = self.focused
        if target is not None and target is not self:
            target.call_later(self._submit)
        else:
            self._submit()

    def _submit(self) -> None:
        if self.sending:
            return
        try:
            spec = self.build()
        except ValidationError as exc:
            self.show_errors(field_errors(exc))
            return
        if spec.link_method == LinkMethod.PHONE and not spec.phone_number:
            self.show_errors({"phone": "needed to link by phone number"})
            return
        self.show_errors({})
        self.sending = True
        self.query_one("#create", Button).disabled = True
        self.post_message(ask.CreateSession(spec, self))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.action_create()
        else:
            self.dismiss(None)
