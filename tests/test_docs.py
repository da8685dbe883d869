"""The state-machine page is generated from the table and must match it."""

from __future__ import annotations

from watui.docs import PAGE, render
from watui.machine import RULES


def test_state_machine_page_is_up_to_date() -> None:
    assert PAGE.read_text() == render(), "run `make docs` to regenerate docs/state-machine.md"


def test_page_lists_every_rule() -> None:
    text = render()
    for rule in RULES:
        assert f"| `{rule.trigger.value}` |" in text
