"""The console's own settings file: key bindings and the theme, in TOML.

Where: ``console.toml`` in the platform config dir (``watui paths`` prints it), or the file
named by ``WATUI_CONSOLE_CONFIG``. Example::

    theme = "nord"

    [keys]
    # binding id = keys (comma-separated); ids are listed in the help screen (?)
    "main.delete" = "D"
    "main.stop" = "x,ctrl+x"

The theme is written back when it is changed from the command palette; the ``[keys]`` table
is only read, so comments and layout there survive. A file that cannot be read is reported
once and ignored: a broken config never keeps the console from starting.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

ENV = "WATUI_CONSOLE_CONFIG"


def default_config_path() -> Path:
    override = os.environ.get(ENV)
    if override:
        return Path(override).expanduser()
    return platformdirs.user_config_path("watui", appauthor=False) / "console.toml"


@dataclass
class ConsoleConfig:
    theme: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    """Why the file was ignored, if it was."""

    @classmethod
    def load(cls, path: Path) -> ConsoleConfig:
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            return cls(problem=f"{path}: {exc.strerror or exc}")
        try:
            data = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            return cls(problem=f"{path}: {exc}")
        theme = data.get("theme")
        keys = data.get("keys", {})
        if (theme is not None and not isinstance(theme, str)) or not isinstance(keys, dict):
            return cls(problem=f"{path}: theme must be a string and [keys] a table")
        bad = [k for k, v in keys.items() if not isinstance(v, str)]
        if bad:
            return cls(problem=f"{path}: [keys] values must be strings like \"x,ctrl+x\" (see {bad[0]!r})")
        return cls(theme=theme, keys=dict(keys))


def save_theme(path: Path, theme: str) -> None:
    """Set ``theme = "…"`` in the file, keeping every other line as it is."""
    line = f"theme = {json.dumps(theme)}\n"  # a JSON string is a valid TOML basic string
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    for i, existing in enumerate(lines):
        if existing.lstrip().startswith("[") :
            lines.insert(i, line)
            break
        if existing.split("=", 1)[0].strip() == "theme":
            lines[i] = line
            break
    else:
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
