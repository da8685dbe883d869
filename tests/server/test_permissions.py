"""The data dir is private, and an unusable one is one clear line (issue 11, items 7 and 8).

Real ``watui`` subprocesses: the command sets the umask, so what SQLite and the engines
create later is checked as a user would find it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from serve_process import REPO, ServerProcess
from server_helpers import api_client


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_in_the_data_dir_is_private_also_files_made_later(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # A data dir left by an older watui: world-readable.
    (data / "auth").mkdir(parents=True)
    os.chmod(data, 0o755)
    os.chmod(data / "auth", 0o755)
    old_auth = data / "auth" / "ses_old.db"
    old_auth.write_text("{}")
    os.chmod(old_auth, 0o644)

    server = spawn_server(data)
    with api_client(server.base_url, server.admin_key) as client:
        session_id = client.post("/v1/sessions", json={"name": "shop"}).json()["session_id"]
        deadline = time.monotonic() + 10
        while client.get(f"/v1/sessions/{session_id}").json()["status"] != "qr_ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"}).status_code == 200
        deadline = time.monotonic() + 10
        while not (data / "auth" / f"{session_id}.db").exists():  # the device's auth, made now
            assert time.monotonic() < deadline
            time.sleep(0.05)
    created = subprocess.run(
        [sys.executable, "-m", "watui", "keys", "create", "--owner", "bob", "--data-dir", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr

    files = [data / name for name in ("watui.db", "watui.db-wal", "watui.db-shm", "admin.key", "watui.lock")]
    files += [old_auth, data / "auth" / f"{session_id}.db"]
    modes = {str(p.relative_to(data)): oct(mode(p)) for p in files}
    assert modes == {str(p.relative_to(data)): "0o600" for p in files}
    assert (oct(mode(data)), oct(mode(data / "auth"))) == ("0o700", "0o700")


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def _without_root_overrides() -> None:
    """In the child, before exec: drop the capabilities that let root ignore file modes, so
    a 0500 directory is read-only to it as to anyone else."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


PLAIN_USER = {"preexec_fn": _without_root_overrides} if os.geteuid() == 0 else {}


def _watui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watui", *args], cwd=REPO, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL, **PLAIN_USER,  # type: ignore[call-overload]
    )


def _serve(data: Path) -> subprocess.CompletedProcess[str]:
    return _watui("serve", "--engine", "simulated", "--port", "0", "--data-dir", str(data))


def test_a_read_only_data_dir_at_start_up_is_one_line_and_status_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o500)  # never written: nothing in it yet

    result = _serve(data)

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_a_data_dir_that_became_read_only_is_one_line_and_status_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A first run, then the directory turns read-only (its files stay writable).
    first = _watui("keys", "create", "--owner", "a", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    assert (data / "watui.db").exists()
    os.chmod(data, 0o500)

    result = _serve(data)

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and "Traceback" not in result.stderr, result.stderr
