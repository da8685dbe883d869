"""``watui attach`` as a user runs it: a real process, a real server, a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import pytest
from serve_process import REPO

from watui.console.attach import AttachError, normalize_url, resolve_key

from .attach_helpers import background_server, free_port, serve_process


def watui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watui", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_urls_and_keys(tmp_path: Path) -> None:
    assert normalize_url("localhost:8080") == "http://localhost:8080"
    assert normalize_url("https://watui.example.com/") == "https://watui.example.com"
    with pytest.raises(AttachError, match="without a path"):
        normalize_url("http://127.0.0.1:8080/v1")
    with pytest.raises(AttachError, match="Not a server URL"):
        normalize_url("ftp://x")
    assert resolve_key("http://far.example.com", " wk_given \n", tmp_path) == "wk_given"
    with pytest.raises(AttachError, match="No API key"):
        resolve_key("http://far.example.com", None, tmp_path)
    with pytest.raises(AttachError, match=r"admin\.key"):
        resolve_key("http://127.0.0.1:8080", None, tmp_path)
    (tmp_path / "admin.key").write_text("wk_local\n")
    assert resolve_key("http://127.0.0.1:8080", None, tmp_path) == "wk_local"
    with pytest.raises(AttachError):  # the local admin key is never sent to another host
        resolve_key("http://far.example.com", None, tmp_path)


def test_a_wrong_key_or_no_server_is_said_plainly(tmp_path: Path) -> None:
    server = background_server(tmp_path / "data")
    try:
        bad = watui("attach", server.base_url, "--key", "wk_wrong")
        assert bad.returncode != 0
        assert f"Cannot attach to {server.base_url}:" in bad.stderr and "key" in bad.stderr.lower()
        by_env = watui("attach", env={"WATUI_URL": server.base_url, "WATUI_API_KEY": "wk_wrong"})
        assert by_env.returncode != 0 and f"Cannot attach to {server.base_url}" in by_env.stderr
    finally:
        server.stop()
    nobody = watui("attach", f"127.0.0.1:{free_port()}", "--key", "k")
    assert nobody.returncode != 0 and "Cannot reach the watui server" in nobody.stderr


class Terminal:
    """A ``watui`` command in a pseudo-terminal of 120x30: read what it draws, type keys."""

    def __init__(self, *args: str) -> None:
        self.leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watui", *args], cwd=REPO, stdin=follower, stdout=follower,
            stderr=follower, close_fds=True, env={**os.environ, "TERM": "xterm-256color", "WATUI_API_KEY": ""},
        )
        os.close(follower)
        self.screen = b""

    def read_until(self, *needles: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not all(n in self.screen for n in needles):
            assert time.monotonic() < deadline, self.screen[-3000:].decode(errors="replace")
            self._read()

    def _read(self) -> bool:
        if select.select([self.leader], [], [], 0.2)[0]:
            try:
                self.screen += os.read(self.leader, 65536)
            except OSError:  # the process closed the terminal
                return False
        return True

    def type(self, keys: bytes) -> None:
        os.write(self.leader, keys)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline and self._read():
            pass
        return self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.leader)


def test_attach_with_the_local_admin_key_shows_the_console_and_quits(tmp_path: Path) -> None:
    """No --key, a server on this machine: the data dir's admin.key is used. The console draws
    its sessions in a real terminal; ``q`` ends it and the server keeps running."""
    server = background_server(tmp_path / "data")
    try:
        server.call(lambda: _create(server, "visible-in-tty"))
        terminal = Terminal("attach", server.base_url, "--data-dir", str(tmp_path / "data"))
        try:
            terminal.read_until(b"visible-in-tty", b"connected")
            terminal.type(b"q")
            assert terminal.wait() == 0
        finally:
            terminal.close()
        assert server.call(lambda: _count(server)) == 1, "the server and its session are still there"
    finally:
        server.stop()


def test_the_console_on_a_data_dir_a_server_holds_offers_to_attach(tmp_path: Path) -> None:
    """``watui`` where ``watui serve`` already runs: no fight over the data dir. In a
    terminal it asks, and attaches; without one it says how, and exits 2."""
    data = tmp_path / "data"
    server = serve_process(data, free_port()).start()
    try:
        with httpx.Client(base_url=server.base_url + "/v1", headers={"Authorization": f"Bearer {server.admin_key}"}) as api:
            api.post("/sessions", json={"name": "held-by-server", "start": False})

        scripted = watui("--data-dir", str(data))
        assert scripted.returncode == 2
        assert f"serving {server.base_url}" in scripted.stderr and f"watui attach {server.base_url}" in scripted.stderr

        declined = Terminal("--data-dir", str(data))
        try:
            declined.read_until(b"Attach to the server at")
            declined.type(b"n\r")
            assert declined.wait() == 2
            assert f"watui attach {server.base_url}".encode() in declined.screen
        finally:
            declined.close()

        accepted = Terminal("--data-dir", str(data))
        try:
            accepted.read_until(b"Attach to the server at")
            accepted.type(b"\r")  # yes is the default
            accepted.read_until(b"held-by-server", b"connected")
            accepted.type(b"q")
            assert accepted.wait() == 0
        finally:
            accepted.close()
        assert server.proc is not None and server.proc.poll() is None, "the server still runs"
    finally:
        server.kill()


async def _create(server: object, name: str) -> None:
    from watui.models import Caller, SessionCreate

    manager = server.manager  # type: ignore[attr-defined]
    await manager.service(Caller.local_admin()).create_session(SessionCreate(name=name, start=False))


async def _count(server: object) -> int:
    from watui.models import Caller

    manager = server.manager  # type: ignore[attr-defined]
    return (await manager.service(Caller.local_admin()).list_sessions()).total


# -- where the key comes from: never the command line, unless asked for (with a warning) ------


def test_keys_come_from_a_file_the_environment_or_a_prompt(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("wk_from_file\n")
    key_file.chmod(0o600)
    far = "http://far.example.com"
    assert resolve_key(far, "wk_env", tmp_path, key_file=key_file) == "wk_from_file", "the file is asked for"
    assert resolve_key(far, None, tmp_path, ask=lambda url: f" wk_typed_for_{url} ") == f"wk_typed_for_{far}"
    assert resolve_key(far, "wk_env", tmp_path, ask=lambda url: "never asked") == "wk_env"
    with pytest.raises(AttachError, match="No API key: set WATUI_API_KEY or pass --key-file PATH"):
        resolve_key(far, None, tmp_path, ask=lambda url: None)  # no terminal to ask in
    with pytest.raises(AttachError, match="Cannot read the key file"):
        resolve_key(far, None, tmp_path, key_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AttachError, match="is empty"):
        resolve_key(far, None, tmp_path, key_file=tmp_path / "empty")


def test_attach_without_a_url_says_how_to_give_one() -> None:
    result = watui("attach", env={"WATUI_URL": ""})
    assert result.returncode == 2
    assert "Pass its URL (watui attach http://HOST:PORT) or set WATUI_URL" in result.stderr


def test_a_key_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    """``--key`` still works (here: a wrong key, refused by the server), with a warning on
    stderr; the same key from WATUI_API_KEY or a file gives none. A file others may read
    is warned about."""
    server = background_server(tmp_path / "data")
    warning = "--key puts the key on the command line, where `ps` shows it"
    try:
        flag = watui("attach", server.base_url, "--key", "wk_wrong", env={"WATUI_API_KEY": ""})
        assert warning in flag.stderr and f"Cannot attach to {server.base_url}" in flag.stderr

        env = watui("attach", server.base_url, env={"WATUI_API_KEY": "wk_wrong"})
        assert warning not in env.stderr and f"Cannot attach to {server.base_url}" in env.stderr

        key_file = tmp_path / "key"
        key_file.write_text("wk_wrong\n")
        key_file.chmod(0o600)
        from_file = watui("attach", server.base_url, "--key-file", str(key_file), env={"WATUI_API_KEY": ""})
        assert from_file.stderr.count("watui: warning") == 0
        assert f"Cannot attach to {server.base_url}" in from_file.stderr and "key" in from_file.stderr.lower()
        key_file.chmod(0o644)
        shared = watui("attach", server.base_url, "--key-file", str(key_file), env={"WATUI_API_KEY": ""})
        assert "other users of this machine may read the key file" in shared.stderr and "chmod 600" in shared.stderr

        both = watui("attach", server.base_url, "--key", "k", "--key-file", str(key_file))
        assert both.returncode != 0 and "not both" in both.stderr

        web = watui("web", "--port", str(free_port()), "--attach", server.base_url, "--key", "wk_wrong",
                    env={"WATUI_API_KEY": ""})
        assert web.returncode != 0 and warning in web.stderr and f"Cannot attach to {server.base_url}" in web.stderr
    finally:
        server.stop()


def test_attach_asks_for_the_key_in_a_terminal_without_showing_it(tmp_path: Path) -> None:
    """No key anywhere (another data dir, so no admin.key): in a terminal, watui asks for it
    and does not echo what is typed."""
    server = background_server(tmp_path / "data")
    try:
        server.call(lambda: _create(server, "asked-for-key"))
        terminal = Terminal("attach", server.base_url, "--data-dir", str(tmp_path / "elsewhere"))
        try:
            terminal.read_until(b"API key for " + server.base_url.encode())
            terminal.type(server.admin_key.encode() + b"\r")
            terminal.read_until(b"asked-for-key", b"connected")
            assert server.admin_key.encode() not in terminal.screen, "the key is not echoed"
            terminal.type(b"q")
            assert terminal.wait() == 0
        finally:
            terminal.close()
    finally:
        server.stop()
