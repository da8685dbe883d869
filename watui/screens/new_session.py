"""The new-session modal: name, description, link method and settings, then create + start."""

from __future__ import annotations

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static

from watui.models import LinkMethod, SessionCreate, SessionSettings


def first_error(exc: ValidationError) -> str:
    """The first validation problem, phrased for a person ("name: ...")."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "settings")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where.replace('_', ' ')}: {message}" if where else message


class NewSessionScreen(ModalScreen[SessionCreate | None]):
    """Dismisses with a validated :class:`SessionCreate` (start=True), or ``None`` on cancel."""

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

    def compose(self) -> ComposeResult:
        with Vertical(id="new-dialog", classes="dialog"):
            yield Static("New session", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(self.default_name, placeholder="e.g. sales-desk", id="new-name", max_length=64,
                            compact=True)
            with Horizontal(classes="field"):
                yield Label("Description", classes="field-label")
                yield Input(placeholder="optional: what this number is for", id="new-description",
                            max_length=500, compact=True)
            with Horizontal(classes="field"):
                yield Label("Link with", classes="field-label")
                with RadioSet(id="new-method", compact=True):
                    yield RadioButton("QR code, scanned with the phone", value=True, id="method-qr")
                    yield RadioButton("Phone number, a code typed on the phone", id="method-phone")
            with Horizontal(classes="field", id="new-phone-row"):
                yield Label("Phone number", classes="field-label")
                yield Input(placeholder="+14155550123", id="new-phone", compact=True)
            with Horizontal(classes="field"):
                yield Label("Reconnect", classes="field-label")
                yield Checkbox("automatically when the connection drops", True, id="new-reconnect",
                               compact=True)
            with Horizontal(classes="field"):
                yield Label("Webhook URL", classes="field-label")
                yield Input(placeholder="optional: https://example.com/hooks/whatsapp", id="new-webhook",
                            compact=True)
            yield Static("", id="new-error", classes="form-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Create (enter)", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#new-phone-row").display = False
        tune = getattr(self.app, "tune_inputs", None)
        if tune is not None:
            tune(self)
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
        })
        return SessionCreate.model_validate({
            "name": value("#new-name"),
            "description": value("#new-description"),
            "settings": settings,
            "start": True,
            "link_method": method,
            "phone_number": (value("#new-phone") or None) if method == LinkMethod.PHONE else None,
        })

    def action_create(self) -> None:
        error = self.query_one("#new-error", Static)
        try:
            spec = self.build()
        except ValidationError as exc:
            error.update(first_error(exc))
            return
        if spec.link_method == LinkMethod.PHONE and not spec.phone_number:
            error.update("phone number: needed to link by phone number")
            return
        self.dismiss(spec)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_create()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.action_create()
        else:
            self.dismiss(None)
