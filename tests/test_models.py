"""Input models: what the console and the API accept and refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from watui.models import SendMessage, SessionCreate, SessionSettings, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("+14155550123", "14155550123"), ("+1 (415) 555-0123", "14155550123"), ("4915112345678", "4915112345678")],
)
def test_phone_numbers_normalise_to_digits(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "12", "+0123456789", "+1٢٣٤٥٦٧٨٩٠", "+1415555012a", "+1234567890123456", "+1\n4155550123"])
def test_bad_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_session_create_refuses_blank_names_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        SessionCreate(name="   ")
    with pytest.raises(ValidationError):
        SessionCreate.model_validate({"name": "x", "colour": "red"})
    assert SessionCreate(name="  shop ").name == "shop"


def test_webhook_secret_must_be_standard_webhooks_format() -> None:
    with pytest.raises(ValidationError):
        SessionSettings(webhook_secret="hunter2")
    assert SessionSettings(webhook_secret="whsec_" + "A" * 32).webhook_secret


def test_messages_need_text() -> None:
    with pytest.raises(ValidationError):
        SendMessage(to="+14155550123", text="   ")
