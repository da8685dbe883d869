"""One process per data dir (issue 11, item 1), with real ``watui`` subprocesses."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from serve_process import REPO, ServerProcess
from server_helpers import api_client

from watui.stores.datadir import DataDirLock, DataDirLocked, LockHolder, read_holder


def watui(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watui", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "WATUI_ENGINE": "simulated"},
    )


def count_events(data_dir: Path) -> int:
    with sqlite3.connect(f"file:{data_dir / 'watui.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_a_second_server_exits_2_naming_the_holder_and_writes_nothing(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = spawn_server(data)
    with api_client(first.base_url, first.admin_key) as client:
        assert client.post("/v1/sessions", json={"name": "one", "start": False}).status_code == 201
    before = count_events(data)
    assert first.proc is not None
    assert read_holder(data) == LockHolder(pid=first.proc.pid, url=first.base_url)

    second = watui("serve", "--port", "0", "--data-dir", str(data))

    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first.proc.pid}" in lines[0] and first.base_url in lines[0]
    assert "watui serving" not in second.stdout
    assert count_events(data) == before
    with api_client(first.base_url, first.admin_key) as client:  # the first is unharmed
        created = client.post("/v1/sessions", json={"name": "two"})
        assert created.status_code == 201, created.text
        assert client.get("/v1/health").status_code == 200


def test_the_console_beside_a_server_exits_2(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = spawn_server(data)
    before = count_events(data)

    console = watui("--data-dir", str(data))

    assert console.returncode == 2, console.stderr
    assert first.base_url in console.stderr and len(console.stderr.strip().splitlines()) == 1
    assert count_events(data) == before


def test_key_commands_work_beside_a_server_and_a_revocation_takes_effect_at_once(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = spawn_server(data)

    created = watui("keys", "create", "--owner", "bob", "--data-dir", str(data))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = created.stdout.split(" key ")[1].split()[0]
    listed = watui("keys", "list", "--data-dir", str(data))
    assert listed.returncode == 0 and key_id in listed.stdout
    paths = watui("paths", "--data-dir", str(data))
    assert paths.returncode == 0 and server.base_url in paths.stdout

    with api_client(server.base_url, key) as bob:
        assert bob.get("/v1/sessions").status_code == 200
        revoked = watui("keys", "revoke", key_id, "--data-dir", str(data))
        assert revoked.returncode == 0, revoked.stderr
        refused = bob.get("/v1/sessions")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"


def test_the_lock_is_free_again_after_the_holder_is_killed(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = spawn_server(data)
    first.kill()  # SIGKILL: no clean-up ran
    assert read_holder(data) is None
    second = spawn_server(data)
    assert read_holder(data) == LockHolder(pid=second.proc.pid if second.proc else None, url=second.base_url)
    with httpx.Client(base_url=second.base_url) as client:
        assert client.get("/v1/health").status_code == 200


def test_one_lock_per_data_dir_even_within_a_process(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with DataDirLock.acquire(tmp_path) as lock:
        assert read_holder(tmp_path) == LockHolder(pid=os.getpid())
        lock.announce("http://127.0.0.1:1234")
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock.acquire(tmp_path)
        assert refused.value.pid == os.getpid() and refused.value.url == "http://127.0.0.1:1234"
    assert read_holder(tmp_path) is None
    DataDirLock.acquire(tmp_path).release()
