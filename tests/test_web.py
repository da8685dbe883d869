"""``watui web`` in a real headless Chromium, driven over the Chrome DevTools Protocol.

The page loads, the console's sessions table reaches it, and keys typed into the page reach
the console (a session made with ``n`` + ``enter`` shows up in the server's API). A
screenshot is kept in ``test-output/web/`` for a reviewer. Chromium is Debian's package; the
set-up installs it when it is missing (CI runs as root).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output" / "web"
CONSOLE_OF = re.compile(r"watui web on (http://\S+)/\?token=(\S+) \(console of (http://\S+)\)")
ESCAPES = re.compile(r"\x1b\[[0-9;?<>]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b.")


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)
        if not CHROMIUM.exists():  # a stale package list: refresh it once
            subprocess.run(["apt-get", "update", "-q"], check=False, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)
    return CHROMIUM


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """``watui web --engine simulated`` in a subprocess; ``api_url`` is its own server's."""

    def __init__(self, data_dir: Path, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.output: list[str] = []
        self.api_url = ""
        self.token = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watui", "web", "--engine", "simulated", "--port", str(port),
             "--data-dir", str(data_dir), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                match = CONSOLE_OF.search(line)
                if match:
                    self.token, self.api_url = match.group(2), match.group(3)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60):
            self.stop()
            raise RuntimeError("watui web did not start:\n" + "".join(self.output))
        deadline = time.monotonic() + 30
        while True:  # the announcement comes just before the web server listens
            try:
                httpx.get(self.url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "".join(self.output)
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def entry(self) -> str:
        """The URL ``watui web`` prints: the page, with the token."""
        return f"{self.url}/?token={self.token}"

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Chrome:
    """Headless Chromium and one page, spoken to over the DevTools websocket."""

    def __init__(self, binary: Path, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.profile = profile
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, session: aiohttp.ClientSession) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            pages = [t for t in await answer.json() if t["type"] == "page"]
        self._ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        assert "error" not in answer, answer
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def type(self, text: str) -> None:
        for char in text:
            key = "Enter" if char == "\r" else char
            await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=char)
            await self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    def terminal_text(self) -> str:
        """Everything the console sent to the page, escape sequences removed."""
        chunks = []
        for event in self.events:
            if event.get("method") == "Network.webSocketFrameReceived":
                response = event["params"]["response"]
                payload = response["payloadData"]
                chunks.append(base64.b64decode(payload).decode("utf-8", "replace")
                              if response.get("opcode") == 2 else payload)
        return ESCAPES.sub("", "".join(chunks))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
async def chrome(chromium: Path, tmp_path: Path) -> AsyncIterator[Chrome]:
    browser = Chrome(chromium, tmp_path / "profile")
    async with aiohttp.ClientSession() as session:
        try:
            await browser.connect(session)
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WebProcess:
        process = WebProcess(tmp_path / "data", free_port(), *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await _value(predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.1)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def screenshot(chrome: Chrome, name: str, tmp_path: Path) -> None:
    """Keep a picture of the page for a reviewer (``test-output/web/``, and the test's dir)."""
    shot = await chrome.send("Page.captureScreenshot", format="png")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    picture = OUTPUT / name
    picture.write_bytes(base64.b64decode(shot["data"]))
    shutil.copy(picture, tmp_path / name)
    assert picture.stat().st_size > 10_000, "a screenshot with something on it"


async def test_the_console_in_chromium(web: Callable[..., WebProcess], chrome: Chrome, tmp_path: Path) -> None:
    server = web()
    key = (tmp_path / "data" / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.api_url + "/v1", headers=headers) as api:
        await api.post("/sessions", json={"name": "billing-web", "start": False})

        await chrome.send("Network.enable")
        await chrome.send("Page.enable")
        await chrome.send("Page.navigate", url=server.entry + "&fontsize=13")
        await eventually(lambda: chrome.evaluate("document.body.classList.contains('-first-byte')"),
                         "the terminal shows the console's first bytes")
        await eventually(lambda: "billing-web" in chrome.terminal_text(), "the session's row in the page")
        text = chrome.terminal_text()
        assert "watui" in text and "stopped" in text, "the top bar, and the row's status"
        await asyncio.sleep(0.5)  # let the page paint the frame for the screenshot
        await screenshot(chrome, "sessions-table.png", tmp_path)

        # Keys typed into the page reach the console: n opens the form, enter creates.
        await chrome.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await chrome.type("n")
        await eventually(lambda: "New session" in chrome.terminal_text()[len(text):], "the new-session form")
        await chrome.type("\r")

        async def created() -> bool:
            return (await api.get("/sessions")).json()["total"] == 2

        await eventually(created, "the session made in the browser, in the server's API")
        name = (await api.get("/sessions", params={"sort": "created_at", "descending": "true"})).json()["sessions"][0]["name"]
        await eventually(lambda: name in chrome.terminal_text()[len(text):], "the console shows it (its QR screen)")
        await asyncio.sleep(0.5)
        await screenshot(chrome, "after-keys.png", tmp_path)
    assert server.stop() == 0, "SIGTERM ends watui web cleanly:\n" + "".join(server.output)


def test_web_attach_with_a_wrong_key_says_so_at_once(tmp_path: Path) -> None:
    """``--attach`` checks the server and the key before serving a single page."""
    from watui.config import Settings
    from watui.server import BackgroundServer

    with BackgroundServer(Settings(data_dir=tmp_path / "data", engine="simulated")) as server:
        url = server.base_url
        result = subprocess.run(
            [sys.executable, "-m", "watui", "web", "--port", str(free_port()), "--attach", url,
             "--key", "wk_wrong"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"Cannot attach to {url}:" in result.stderr and "key" in result.stderr.lower()


def test_web_on_a_data_dir_a_server_holds_attaches_to_it(tmp_path: Path) -> None:
    """No second engine over one data dir: ``watui web`` drives the server that holds it."""
    from watui.config import Settings
    from watui.server import BackgroundServer

    with BackgroundServer(Settings(data_dir=tmp_path / "data", engine="simulated")) as server:
        web = WebProcess(tmp_path / "data", free_port())
        try:
            assert web.api_url == server.base_url
            assert "attaches to it" in "".join(web.output)
            assert httpx.get(web.entry, timeout=10, follow_redirects=True).status_code == 200
        finally:
            assert web.stop() == 0


# ---------------------------------------------------------------- who may open it


def browser_session() -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (aiohttp's jar skips IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def open_tab(server: WebProcess, session: aiohttp.ClientSession, **headers: str) -> aiohttp.ClientWebSocketResponse:
    """A tab's websocket, as a browser on the printed URL opens it; waits for the console's
    first bytes, so the tab is really running."""
    socket = await session.ws_connect(f"{server.url}/ws?width=80&height=24",
                                      headers={"Origin": server.url, **headers})
    async with asyncio.timeout(60):
        while True:
            message = await socket.receive()
            assert message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), message
            if message.type == aiohttp.WSMsgType.BINARY and len(message.data) > 10:
                return socket


async def test_the_page_and_the_websocket_need_the_token(web: Callable[..., WebProcess]) -> None:
    server = web()
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(server.url + "/") as page:
            assert page.status == 401 and "token" in (await page.text())
        async with anonymous.get(server.url + "/?token=not-the-token") as page:
            assert page.status == 401
        async with anonymous.get(server.url + "/static/js/textual.js") as script:
            assert script.status == 401
        async with anonymous.get(server.url + "/ws", headers={**UPGRADE, "Origin": server.url}) as upgrade:
            assert upgrade.status == 403, "no console process for a websocket without the token"

    async with browser_session() as browser:
        # The printed URL sets the cookie and takes the token out of the address bar.
        async with browser.get(server.entry + "&fontsize=13", allow_redirects=False) as first:
            assert first.status == 303 and first.headers["Location"] == "/?fontsize=13"
            cookie = first.cookies[f"watui_web_{server.port}"]
            assert cookie.value == server.token and cookie["httponly"] and cookie["samesite"] == "Strict"
        async with browser.get(server.url + "/?fontsize=13") as page:
            assert page.status == 200 and 'data-font-size="13"' in await page.text()
        tab = await open_tab(server, browser)
        await tab.close()


async def test_a_foreign_origin_or_host_gets_nothing_even_with_the_token(web: Callable[..., WebProcess]) -> None:
    """A page on another site (a cross-site websocket) or a DNS-rebinding name: refused."""
    server = web()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/ws?token={server.token}",
                               headers={**UPGRADE, "Origin": "http://attacker.example"}) as upgrade:
            assert upgrade.status == 403
        async with session.get(server.entry, headers={"Host": f"attacker.example:{server.port}"},
                               allow_redirects=False) as page:
            assert page.status == 403 and "does not answer" in await page.text()
        async with session.get(f"{server.url}/ws?token={server.token}",
                               headers={**UPGRADE, "Host": f"attacker.example:{server.port}",
                                        "Origin": f"http://attacker.example:{server.port}"}) as upgrade:
            assert upgrade.status == 403
        # The names this loopback server does go by still work.
        async with session.get(server.entry, headers={"Host": f"localhost:{server.port}"},
                               allow_redirects=False) as page:
            assert page.status == 303


async def test_a_fixed_token_and_a_public_url(web: Callable[..., WebProcess]) -> None:
    token = "fixed-token-for-this-console-1234"
    port = free_port()
    server = web("--public-url", f"http://console.example:{port}", env={"WATUI_WEB_TOKEN": token})
    assert server.token == token
    assert f"watui web on http://console.example:{port}/?token={token}" in "".join(server.output)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/?token={token}", headers={"Host": f"console.example:{port}"},
                               allow_redirects=False) as first:
            assert first.status == 303
        async with session.get(f"{server.url}/", headers={"Host": f"console.example:{port}"},
                               cookies={f"watui_web_{server.port}": token}) as page:
            text = await page.text()
            assert page.status == 200 and f"ws://console.example:{port}/ws" in text


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "watui", "web", "--port", str(free_port()), "--data-dir",
                             str(tmp_path / "data"), "--token", "short"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "16 characters" in result.stderr


async def test_open_tabs_are_capped(web: Callable[..., WebProcess]) -> None:
    server = web("--max-tabs", "1")
    async with browser_session() as browser:
        async with browser.get(server.entry) as page:
            assert page.status == 200
        tab = await open_tab(server, browser)
        async with browser.get(server.url + "/") as page:
            assert page.status == 503 and "All 1 tabs" in await page.text()
        async with browser.get(server.url + "/ws", headers={**UPGRADE, "Origin": server.url}) as upgrade:
            assert upgrade.status == 503, "no second console process"
        await tab.close()

        async def page_again() -> bool:
            async with browser.get(server.url + "/") as page:
                return page.status == 200

        await eventually(page_again, "a closed tab frees its place")


def test_a_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "watui", "web", "--engine", "simulated", "--port", str(port),
                                 "--data-dir", str(tmp_path / "data")],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == "", "nothing claims it started"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], result.stderr
    assert not (tmp_path / "data" / "watui.lock").exists() or "pid" not in (tmp_path / "data" / "watui.lock").read_text()


async def test_the_page_loads_everything_from_this_server_and_fits_a_phone(
    web: Callable[..., WebProcess], chrome: Chrome, tmp_path: Path
) -> None:
    server = web()
    await chrome.send("Network.enable")
    await chrome.send("Page.enable")
    await chrome.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1,
                      mobile=True)
    await chrome.send("Page.navigate", url=server.entry)
    await eventually(lambda: chrome.evaluate("document.body.classList.contains('-first-byte')"),
                     "the terminal shows the console's first bytes")
    await eventually(lambda: chrome.evaluate("document.fonts.check('12px \"Roboto Mono\"')"),
                     "the page's font, from this server")
    requested = [event["params"]["request"]["url"] for event in chrome.events
                 if event.get("method") == "Network.requestWillBeSent"]
    assert requested and all(url.startswith((server.url, f"ws://127.0.0.1:{server.port}")) for url in requested), requested
    assert any("/static/fonts/" in url for url in requested), "the font came from the package"
    # At a phone's width the page is laid out for the phone, and the text is readable.
    assert await chrome.evaluate("window.innerWidth") == 390
    # The terminal's size in cells, as the page told the console (its "resize" frame).
    sizes = [json.loads(event["params"]["response"]["payloadData"])[1] for event in chrome.events
             if event.get("method") == "Network.webSocketFrameSent"
             and event["params"]["response"]["payloadData"].startswith('["resize"')]
    assert sizes, "the page sized the console"
    columns, rows = sizes[-1]["width"], sizes[-1]["height"]
    screen = await chrome.evaluate("document.querySelector('.xterm-screen').getBoundingClientRect().height")
    assert columns >= 40, f"{columns} columns"
    assert screen / rows >= 12, f"lines {screen / rows:.1f} px high ({rows} rows in {screen} px)"
    await asyncio.sleep(0.5)  # let the page paint the frame for the screenshot
    await screenshot(chrome, "phone-width.png", tmp_path)
