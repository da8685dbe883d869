"""Layering: the engine core and the server never import Textual; the server imports no screen."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "watui.machine", "watui.models", "watui.errors", "watui.config", "watui.clock", "watui.store",
    "watui.bus", "watui.manager", "watui.service", "watui.qr", "watui.engines.simulated",
    "watui.engines.base", "watui.server", "watui.engines.factory", "watui.engines.hosts",
    "watui.engines.hosts.host", "watui.engines.hosts.wire", "watui.server.routes_engine", "watui.remote",
    "watui.cluster.routing", "watui.server.routes_cluster",
]

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "textual" or name.startswith("textual.") or name.startswith("watui.screens") \\
                or name.startswith("watui.widgets") or name == "watui.app":
            raise ImportError(f"{name} must not be imported here")
        return None
sys.meta_path.insert(0, Block())
import importlib
importlib.import_module(sys.argv[1])
"""


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_without_textual(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKER, module], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_blocker_really_blocks() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKER, "textual.app"], capture_output=True, text=True)
    assert result.returncode != 0 and "must not be imported" in result.stderr
