"""The state-machine page is generated from the table and must match it; the docs name only
source paths that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watui.docs import PAGE, render
from watui.machine import RULES


def test_state_machine_page_is_up_to_date() -> None:
    assert PAGE.read_text() == render(), "run `make docs` to regenerate docs/state-machine.md"


def test_page_lists_every_rule() -> None:
    text = render()
    for rule in RULES:
        assert f"| `{rule.trigger.value}` |" in text


ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_source_path_a_doc_names_exists(doc: Path) -> None:
    """A file moved or split without its docs updated leaves a reader at a dead end."""
    named = set(re.findall(r"`(watui/[\w/]+(?:\.py)?)`", doc.read_text()))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_architecture_page_names_every_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent.name for p in (ROOT / "watui").glob("*/__init__.py"))
    assert packages, "no packages found"
    for package in packages:
        assert f"{package}/" in text, f"docs/architecture.md does not say what lives in watui/{package}/"
