"""Stopping ``watui serve`` (issue 19): SIGTERM ends it within 10 s whatever is under way (a
request that never finishes, a stream drawing QR codes, sessions in engine hosts, silent
connections), with its sessions parked, the store flushed and the hosts stopped; a second
SIGTERM or Ctrl-C ends it at once; a stop that hangs is ended at the deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_process import ServerProcess
from server_helpers import api_client
from test_retention import wait_for
from test_server_engine_hosts import alive

from watui.server.runner import STOP_DEADLINE

WAITING = "Waiting for connections to close"


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``, with their command lines."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_text().replace("\0", " ")
    return found


def address(proc: ServerProcess) -> tuple[str, int]:
    host, port = proc.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def hang_a_request(proc: ServerProcess) -> socket.socket:
    """A request whose body never comes: uvicorn waits for it when stopping."""
    sock = socket.create_connection(address(proc))
    sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + proc.admin_key.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"na")
    with api_client(proc.base_url) as client:  # by the time this answers, the request above is in
        assert client.get("/v1/health").status_code == 200
    return sock


def wait_exit(proc: ServerProcess, timeout: float) -> tuple[int, float]:
    """The exit status and how long it took, from now."""
    assert proc.proc is not None
    started = time.monotonic()
    try:
        code = proc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout} s later:\n" + "".join(proc.output[-30:]))
    return code, time.monotonic() - started


def create_sessions(client: httpx.Client, count: int) -> list[str]:
    def create(n: int) -> str:
        response = client.post("/v1/sessions", json={"name": f"s{n:04d}"})
        assert response.status_code == 201, response.text
        sid: str = response.json()["session_id"]
        return sid

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


def session_statuses(data_dir: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "watui.db")) as db:
        return [json.loads(doc)["status"] for (doc,) in db.execute("SELECT doc FROM sessions")]


@pytest.fixture
def stopped_pids() -> Iterator[list[int]]:
    """Processes a test stopped (SIGSTOP): killed at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_ends_a_busy_server_within_10_s_sessions_parked_and_hosts_stopped(
    spawn_server: Callable[..., ServerProcess],
) -> None:
    proc = spawn_server(args=["--engine-isolation", "process"], WATUI_SESSIONS_PER_HOST="25",
                        WATUI_QR_FIRST_TTL="1", WATUI_QR_NEXT_TTL="1", WATUI_QR_CODES_PER_ATTEMPT="100000")
    assert proc.proc is not None
    with api_client(proc.base_url, proc.admin_key) as client, contextlib.ExitStack() as stack:
        ids = create_sessions(client, 200)
        showing_qr = {"status": "qr_ready", "limit": 1}
        wait_for(lambda: client.get("/v1/sessions", params=showing_qr).json()["total"] == len(ids), timeout=30)
        drawn = threading.Event()

        def watch() -> None:  # a subscriber: every code's PNG is drawn for it
            with contextlib.suppress(httpx.HTTPError), client.stream("GET", "/v1/events") as events:
                for line in events.iter_lines():
                    if '"qr_data":"data:image/png' in line:
                        drawn.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert drawn.wait(30), "QR codes drawn for the stream"
        for _ in range(300):
            stack.enter_context(socket.create_connection(address(proc)))
        stack.enter_context(hang_a_request(proc))
        children = children_of(proc.proc.pid)
        assert sum("watui.engines.hosts" in c for c in children.values()) >= 2, children

        proc.proc.send_signal(signal.SIGTERM)
        code, took = wait_exit(proc, 2 * STOP_DEADLINE)
        watcher.join(10)
    log = "".join(proc.output)
    assert took < STOP_DEADLINE, f"{took:.1f} s"
    assert code in (0, -signal.SIGTERM) and "exiting now" not in log, "the whole shutdown, not the deadline's exit"
    assert WAITING in log, "it waited for the request that never finished, for a while"
    assert not watcher.is_alive(), "the stream ended"
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)  # hosts, writer, drawing process
    assert set(session_statuses(proc.data_dir)) == {"disconnected"}, "every session parked, in the store"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM twice", "Ctrl-C twice"])
def test_a_second_signal_ends_it_at_once(spawn_server: Callable[..., ServerProcess], sig: signal.Signals) -> None:
    proc = spawn_server(args=["--engine-isolation", "process"])
    assert proc.proc is not None
    with api_client(proc.base_url, proc.admin_key) as client, hang_a_request(proc):
        create_sessions(client, 1)
        pid = proc.proc.pid
        hosts = wait_for(lambda: [child for child, command in children_of(pid).items()
                                  if "watui.engines.hosts" in command])
        assert len(hosts) == 1
        proc.proc.send_signal(sig)
        wait_for(lambda: WAITING in "".join(proc.output), timeout=10)  # the stop waits for the request
        proc.proc.send_signal(sig)
        code, took = wait_exit(proc, 10)
    assert code == 128 + sig and took < 3, f"status {code} after {took:.1f} s"
    assert f"{sig.name} while stopping: exiting now" in "".join(proc.output)
    wait_for(lambda: not alive(hosts[0]), timeout=10)  # the engine host to end with it


def test_a_stop_that_hangs_is_ended_at_the_deadline(
    spawn_server: Callable[..., ServerProcess], stopped_pids: list[int],
) -> None:
    """The disk stalls: the store's writer stops answering, so parking the sessions hangs."""
    proc = spawn_server()
    assert proc.proc is not None
    with api_client(proc.base_url, proc.admin_key) as client:
        create_sessions(client, 3)
    writer = next(pid for pid, command in children_of(proc.proc.pid).items() if "sqlite_writer_process" in command)
    stopped_pids.append(writer)
    os.kill(writer, signal.SIGSTOP)
    proc.proc.send_signal(signal.SIGTERM)
    code, took = wait_exit(proc, 2 * STOP_DEADLINE)
    assert code == 128 + signal.SIGTERM and STOP_DEADLINE - 2 < took < STOP_DEADLINE, f"status {code} after {took:.1f} s"
    assert "not stopped 9 s after the signal: exiting now" in "".join(proc.output)
