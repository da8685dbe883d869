"""The import contracts of ``make lint`` (pyproject.toml, docs/architecture.md) hold for the
tree, and each one breaks when a change breaks its rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (file to change, line to add at its end, the contract it breaks, what the report names)
VIOLATIONS = {
    "textual in the core": (
        "watui/models/base.py", "import textual.widgets\n", "Textual only in the console",
        "watui.models.base -> textual",
    ),
    "the core importing a face": (
        "watui/manager/registry.py", "import watui.server\n", "Layers: imports point down",
        "watui.manager.registry -> watui.server",
    ),
    "the console importing the server": (
        "watui/console/feed.py", "import watui.server.app\n", "The console and the server are independent faces",
        "watui.console.feed -> watui.server",
    ),
    "a screen importing the app": (
        "watui/screens/help.py", "import watui.app\n", "never import it", "watui.screens.help -> watui.app",
    ),
    "a loop hidden in a function": (
        "watui/widgets/text.py", "def _late():\n    import watui.widgets.sessions_table\n",
        "No import loops between modules", "watui.widgets.text -> watui.widgets.sessions_table",
    ),
    "a loop across the console's packages": (
        "watui/console/verbs.py", "import watui.widgets.messages\n", "No import loops between modules",
        "watui.console.verbs -> watui.widgets.messages",
    ),
    "a package's module importing its face": (
        "watui/webhooks/models.py", "from watui.webhooks import WebhookDispatcher\n",
        "No import loops between modules", "watui.webhooks.models -> watui.webhooks",
    ),
    "a loop between sibling packages": (
        "watui/stores/base.py", "import watui.stores.postgres\n",
        "No import loops between the sibling packages", "watui.stores",
    ),
}


@pytest.mark.parametrize("violation", list(VIOLATIONS))
def test_a_deliberate_violation_breaks_its_contract(violation: str, tmp_path: Path) -> None:
    path, line, contract, named = VIOLATIONS[violation]
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "watui", tree / "watui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "lint", tree / "lint", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    assert lint_imports(tree).returncode == 0  # the copy itself is clean
    with (tree / path).open("a") as file:
        file.write("\n" + line)
    result = lint_imports(tree)
    report = " ".join(result.stdout.split())  # the report wraps long lines
    assert result.returncode != 0
    assert f"{contract}" in report and "BROKEN" in report, report
    broken = report[report.index("Broken contracts"):]
    assert contract in broken and named in broken, broken
