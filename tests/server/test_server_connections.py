"""Connections (issue 19): a connection that sends no complete request headers in time is
closed, one past the cap is answered ``503 OVERLOADED`` and closed, the open-files limit is
raised at start, and with it at 1024 a flood of silent connections is shed while SSE streams
are left alone."""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServerProcess
from server_helpers import api_client
from test_retention import wait_for

from watui.config import Settings
from watui.server import BackgroundServer, connections
from watui.server.connections import MIN_CONNECTIONS, default_max_connections

FLOOD = 1100


def address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    received = b""
    while True:
        remaining = started + timeout - time.monotonic()
        assert remaining > 0, f"still open after {timeout} s (received {received!r})"
        sock.settimeout(remaining)
        with contextlib.suppress(TimeoutError):
            data = sock.recv(65536)
            if not data:
                return received, time.monotonic() - started
            received += data


def still_open_for(sock: socket.socket, seconds: float) -> bool:
    """True if the server neither closes ``sock`` nor sends on it for ``seconds``."""
    sock.settimeout(seconds)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


def read_response(sock: socket.socket) -> bytes:
    """One whole response, without waiting for the connection to close."""
    sock.settimeout(10)
    received = b""
    while True:
        if b"\r\n\r\n" in received:
            _, headers, body = split_answer(received)
            if len(body) >= int(headers["content-length"]):
                return received
        data = sock.recv(65536)
        assert data, f"closed mid-response: {received!r}"
        received += data


def drain(sock: socket.socket) -> bytes:
    """What has arrived on ``sock`` so far, without waiting."""
    sock.setblocking(False)
    received = b""
    with contextlib.suppress(BlockingIOError):
        while data := sock.recv(65536):
            received += data
    sock.setblocking(True)
    return received


def open_connections(server: BackgroundServer) -> int:
    assert server.server is not None
    return len(server.server.server_state.connections)


def request(path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split_answer(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


def assert_overloaded(raw: bytes, retry_after: str) -> None:
    status, headers, body = split_answer(raw)
    assert status == "HTTP/1.1 503 Service Unavailable", raw
    assert headers["retry-after"] == retry_after and headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "OVERLOADED" and "retry" in error["message"]


# ---------------------------------------------------------------- header deadline


def test_headers_that_never_end_are_cut_off_at_the_deadline(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(header_timeout=0.5)
    with socket.create_connection(address(server.base_url)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: test\r\n")
        closed = False
        while not closed and time.monotonic() - started < 20:
            try:
                sock.sendall(b"X-Slow: y\r\n")  # never the blank line that ends the headers
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            closed = closed or not still_open_for(sock, 0.1)
        took = time.monotonic() - started
    assert closed and 0.45 <= took < 10, f"closed {closed} after {took:.1f} s"


def test_a_kept_alive_connection_may_idle_but_its_next_headers_have_the_deadline(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(header_timeout=0.5)
    with socket.create_connection(address(server.base_url)) as sock:
        sock.sendall(request("/v1/health"))
        assert read_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        # Between requests the keep-alive timeout (30 s) applies, not the header deadline.
        assert still_open_for(sock, 1.5)
        sock.sendall(request("/v1/health"))
        assert read_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")  # a third request, never finished
        answer, took = read_until_closed(sock, timeout=20)
    assert answer == b"" and took >= 0.45


def test_by_default_a_silent_connection_is_closed_after_10_s_and_a_stream_is_not(
    server: BackgroundServer,
) -> None:
    """The real default: 10 s. An SSE stream opened at the same moment is still streaming
    after the silent connection is gone: the deadline ends with the request's headers."""
    with socket.create_connection(address(server.base_url)) as stream, \
            socket.create_connection(address(server.base_url)) as silent:
        stream.sendall(request("/v1/events", Authorization=f"Bearer {server.admin_key}"))
        answer, took = read_until_closed(silent, timeout=30)
        assert answer == b"" and took >= 9.5
        meanwhile = drain(stream)
        assert meanwhile.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in meanwhile
        assert meanwhile.count(b": ping") >= 10  # one every 0.2 s
        stream.settimeout(10)
        assert b": ping" in stream.recv(65536), "still streaming after the header deadline"


# ---------------------------------------------------------------- cap


def test_past_the_cap_a_connection_is_answered_503_overloaded_and_closed(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(max_connections=3, header_timeout=30)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(socket.create_connection(address(server.base_url))) for _ in range(3)]
        wait_for(lambda: open_connections(server) == 3)  # the server to hold three connections
        # A client that sends its request at once still reads the answer (its bytes are read
        # and dropped, so the close is no reset); one that sends nothing gets it too.
        for _ in range(10):
            response = httpx.get(f"{server.base_url}/v1/health", timeout=10)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "30"
            error = response.json()["error"]
            assert error["code"] == "OVERLOADED" and set(error) == {"code", "message", "details"}
        with socket.create_connection(address(server.base_url)) as silent:
            answer, _ = read_until_closed(silent, timeout=10)
        assert_overloaded(answer, "30")
        held.pop().close()
        with api_client(server.base_url) as client:
            wait_for(lambda: client.get("/v1/health").status_code == 200)  # a place to free up
            assert client.get("/v1/health").json()["engine"] == "simulated"


def test_a_refused_client_still_sending_its_request_reads_its_answer_and_a_clean_close(
    start_server: Callable[..., BackgroundServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lingering close: the refused connection reads and drops what the client still sends
    (a socket closed with bytes unread is reset, and the client's next write fails)."""
    monkeypatch.setattr(connections, "REFUSED_QUIET", 10.0)  # no scheduling hiccup ends it here
    server = start_server(max_connections=1, header_timeout=30)
    with socket.create_connection(address(server.base_url)):
        wait_for(lambda: open_connections(server) == 1)  # the server to hold a connection
        with socket.create_connection(address(server.base_url)) as sock:
            sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n")
            answer = read_response(sock)
            sock.sendall(b"{}")  # the body, after the answer came
            sock.shutdown(socket.SHUT_WR)
            rest, _ = read_until_closed(sock, timeout=10)
        assert_overloaded(answer + rest, "30")


def test_the_default_cap_leaves_room_for_the_store_and_the_engine_hosts() -> None:
    simulated = Settings(engine="simulated")
    assert default_max_connections(simulated, 1024) == 896
    # 1,000 sessions in engine hosts of 50: 20 hosts, three pipes each.
    assert default_max_connections(Settings(engine="neonize"), 1024) == 836
    # Neonize sessions inline each hold a websocket and an auth database.
    assert default_max_connections(Settings(engine="neonize", engine_isolation="inline", node_capacity=100),
                                   4096) == 4096 - 128 - 400
    assert default_max_connections(simulated, 100) == MIN_CONNECTIONS
    assert default_max_connections(simulated, 1_048_576) == 1_048_576 - 128


# ---------------------------------------------------------------- a real flood


@pytest.fixture
def open_files_for_the_flood() -> Iterator[None]:
    """This process holds the flood's sockets: its soft open-files limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 256:
        pytest.skip(f"the hard open-files limit ({hard}) is too low for {FLOOD} client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def open_files_limited(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int) -> Iterator[None]:
    """Processes started meanwhile have the open-files limit ``soft``/``hard``."""
    popen = subprocess.Popen

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def limited(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        return popen(*args, preexec_fn=limit, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", limited)
        yield


def limits_of(pid: int) -> tuple[int, int]:
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def answers_until_closed(socks: list[socket.socket], deadline: float) -> list[bytes]:
    """What the server sent on each socket, once it has closed every one (cleanly: a reset
    fails here)."""
    answers = dict.fromkeys(socks, b"")
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        still_open = len(socks)
        while still_open:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{still_open} of {len(socks)} connections still open"
            for key, _ in selector.select(remaining):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(65536)
                if data:
                    answers[sock] += data
                else:
                    selector.unregister(sock)
                    still_open -= 1
    return list(answers.values())


def test_with_1024_open_files_a_flood_of_silent_connections_is_shed(
    spawn_server: Callable[..., ServerProcess], monkeypatch: pytest.MonkeyPatch, open_files_for_the_flood: None,
) -> None:
    with open_files_limited(monkeypatch, soft=512, hard=1024):
        proc = spawn_server(WATUI_HEADER_TIMEOUT="2")
    assert proc.proc is not None
    assert limits_of(proc.proc.pid) == (1024, 1024), "the soft limit raised to the hard one"
    log = "".join(proc.output)
    assert log.count("open files: limit raised from 512 to 1024") == 1
    assert "connections: at most 896 open at once" in log

    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        socks = [stack.enter_context(socket.create_connection(address(proc.base_url), timeout=10))
                 for _ in range(FLOOD)]
        answers = answers_until_closed(socks, deadline=started + 40)
    refused = [answer for answer in answers if answer]
    assert 0 < len(refused) <= FLOOD - 896, "past the cap (and only there), answered at once"
    for answer in refused:
        assert_overloaded(answer, "2")
    with httpx.Client(base_url=proc.base_url, timeout=5) as client:
        wait_for(lambda: client.get("/v1/health").status_code == 200)  # /v1/health to answer again
