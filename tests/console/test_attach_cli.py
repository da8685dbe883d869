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

import pytest

from watui.attach import AttachError, normalize_url, resolve_key

from .attach_helpers import REPO, background_server, free_port


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


def test_attach_with_the_local_admin_key_shows_the_console_and_quits(tmp_path: Path) -> None:
    """No --key, a server on this machine: the data dir's admin.key is used. The console draws
    its sessions in a real terminal; ``q`` ends it and the server keeps running."""
    server = background_server(tmp_path / "data")
    try:
        server.call(lambda: _create(server, "visible-in-tty"))
        leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "watui", "attach", server.base_url, "--data-dir", str(tmp_path / "data")],
            cwd=REPO, stdin=follower, stdout=follower, stderr=follower, close_fds=True,
            env={**os.environ, "TERM": "xterm-256color", "WATUI_API_KEY": ""},
        )
        os.close(follower)
        screen = b""
        deadline = time.monotonic() + 30
        try:
            while b"visible-in-tty" not in screen or b"connected" not in screen:
                assert time.monotonic() < deadline, screen[-2000:].decode(errors="replace")
                if select.select([leader], [], [], 0.2)[0]:
                    screen += os.read(leader, 65536)
            os.write(leader, b"q")
            while proc.poll() is None and time.monotonic() < deadline:
                if select.select([leader], [], [], 0.2)[0]:
                    try:
                        os.read(leader, 65536)
                    except OSError:
                        break
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(leader)
        assert server.call(lambda: _count(server)) == 1, "the server and its session are still there"
    finally:
        server.stop()


async def _create(server: object, name: str) -> None:
    from watui.models import Caller, SessionCreate

    manager = server.manager  # type: ignore[attr-defined]
    await manager.service(Caller.local_admin()).create_session(SessionCreate(name=name, start=False))


async def _count(server: object) -> int:
    from watui.models import Caller

    manager = server.manager  # type: ignore[attr-defined]
    return (await manager.service(Caller.local_admin()).list_sessions()).total
