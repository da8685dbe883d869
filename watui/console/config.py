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
once and ignored: a broken config never keeps the console from starting. A remap that names
no binding, or that would give a key two bindings on one screen, is left out and said so
(:func:`check_keys`): at start-up in the console, and by ``watui paths``.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from textual.binding import Binding, InvalidBinding

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


# -- checking the [keys] remaps ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyScope:
    """The bindings a key press may reach on one screen (see :mod:`watui.screens.keymap`)."""

    name: str
    bindings: tuple[Binding, ...]


@dataclass(frozen=True)
class KeyCheck:
    applied: dict[str, str]
    """The remaps that are safe, as written (binding id → keys)."""
    ignored: list[str]
    """One sentence per remap left out, saying why."""


def key_list(keys: str) -> tuple[str, ...]:
    """``"x, ctrl+x"`` as Textual reads it: ``("x", "ctrl+x")``; ``"?"`` is ``question_mark``."""
    return tuple(b.key for b in Binding.make_bindings([Binding(keys, "")]))


def _shown(keys: str) -> str:
    return json.dumps(keys)


def check_keys(keys: dict[str, str], scopes: Sequence[KeyScope]) -> KeyCheck:
    """Which ``[keys]`` remaps to apply: not one naming no binding, and not one that gives a
    key two bindings on one screen. Keys shared by default (``escape`` closing a dialog that
    sits over the app's own keys) stay allowed. Of two remaps that clash, the later one in the
    file is left out; a remap left out gives its binding back its own keys, which may clash
    with another remap in turn (that one is left out too)."""
    known: dict[str, Binding] = {}
    defaults: dict[str, list[str]] = {}
    for scope in scopes:
        for binding in scope.bindings:
            if binding.id:
                known.setdefault(binding.id, binding)
                if binding.key not in defaults.setdefault(binding.id, []):
                    defaults[binding.id].append(binding.key)
    reasons: dict[str, str] = {}
    remaps: dict[str, tuple[str, ...]] = {}
    for binding_id, raw in keys.items():
        if binding_id not in known:
            near = difflib.get_close_matches(binding_id, list(known), n=1)
            hint = f" (did you mean {_shown(near[0])}?)" if near else ""
            reasons[binding_id] = f"no key has the id {_shown(binding_id)}{hint}; the help screen (?) lists them"
            continue
        try:
            parsed = key_list(raw)
        except InvalidBinding:
            parsed = ()
        if not parsed:
            reasons[binding_id] = 'that is not a list of keys like "x,ctrl+x"'
            continue
        remaps[binding_id] = tuple(dict.fromkeys(parsed))
    order = {binding_id: i for i, binding_id in enumerate(keys)}

    def reached(scope: KeyScope, remapped: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Binding]]:
        """Key → the bindings it reaches on this screen, by id (by action for those without)."""
        table: dict[str, dict[str, Binding]] = {}
        for binding in scope.bindings:
            name = binding.id or f"<{binding.action}>"
            moved = remapped.get(binding.id) if binding.id else None
            for key in moved if moved is not None else (binding.key,):
                table.setdefault(key, {})[name] = binding
        return table

    shared = {(scope.name, key): frozenset(found) for scope in scopes
              for key, found in reached(scope, {}).items() if len(found) > 1}

    def clash() -> tuple[str, str] | None:
        """The first remap that makes a key reach two bindings somewhere, and why."""
        for scope in scopes:
            for key, found in reached(scope, remaps).items():
                if len(found) < 2 or frozenset(found) <= shared.get((scope.name, key), frozenset()):
                    continue
                if len({b.action.removeprefix("app.") for b in found.values()}) == 1:
                    continue  # one thing either way (ctrl+q quits already)
                moved = sorted((n for n in found if n in remaps), key=order.__getitem__)
                if not moved:
                    continue
                culprit = moved[-1]
                other_id = next(n for n in found if n != culprit)
                other = found[other_id]
                what = f"{other.description or other.action} ({other_id})"
                mine = known[culprit].description or culprit
                own = ",".join(key_label(k) for k in defaults[culprit])
                if other_id in remaps:
                    return culprit, (f"{key_label(key)} is remapped to {what} as well, on {scope.name}; "
                                     f"{mine} keeps {own}")
                return culprit, f"{key_label(key)} is {what} on {scope.name}; {mine} keeps {own}"
        return None

    while (found := clash()) is not None:
        culprit, reasons[culprit] = found
        del remaps[culprit]
    applied = {binding_id: keys[binding_id] for binding_id in keys if binding_id in remaps}
    ignored = [f"{_shown(binding_id)} = {_shown(keys[binding_id])} ignored: {reasons[binding_id]}."
               for binding_id in keys if binding_id in reasons]
    return KeyCheck(applied, ignored)


KEY_NAMES = {"slash": "/", "question_mark": "?", "asterisk": "*", "escape": "esc"}


def key_label(key: str) -> str:
    return KEY_NAMES.get(key, key)


def describe_check(config: ConsoleConfig, scopes: Iterable[KeyScope]) -> list[str]:
    """What of the file is not used, one line each (nothing when all of it is)."""
    if config.problem:
        return [f"not used: {config.problem}"]
    return check_keys(config.keys, list(scopes)).ignored
