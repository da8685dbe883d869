"""Screens ask, the app decides: no screen or widget imports the app module (not even for types)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WATUI = Path(__file__).resolve().parents[2] / "watui"
MODULES = sorted([*WATUI.glob("screens/*.py"), *WATUI.glob("widgets/*.py"), WATUI / "console" / "requests.py"])


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_screens_and_widgets_never_import_the_app(path: Path) -> None:
    assert "watui.app" not in imported(path), f"{path.name} imports watui.app: post a watui.console.requests request instead"


def test_widgets_never_import_screens() -> None:
    for path in WATUI.glob("widgets/*.py"):
        assert not any(name.startswith("watui.screens") for name in imported(path)), path.name
