"""Typing as a fast typist, a paste or a laggy SSH link does: keys arrive in one burst."""

from __future__ import annotations

import unicodedata

from textual import events
from textual.app import App
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.pilot import Pilot


def key_event(key: str) -> events.Key:
    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    original = REPLACED_KEYS.get(key, key)
    try:
        char: str | None = unicodedata.lookup(_get_unicode_name_from_key(original))
    except KeyError:
        char = key if len(key) == 1 else None
    return events.Key(key, char)


def burst(pilot: Pilot[object], *keys: str) -> None:
    """Queue every key at once, as the terminal driver would, without waiting in between."""
    app: App[object] = pilot.app
    driver = app._driver
    assert driver is not None
    for key in keys:
        event = key_event(key)
        event.set_sender(app)
        driver.send_message(event)


def toasts(app: App[object]) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]
