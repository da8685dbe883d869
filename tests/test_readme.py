"""The README's headless example works pasted into a shell, in order.

The two fenced blocks of "## Headless mode" run as written, in bash: the first (``make
serve``) in the background, the second once the server listens. Only the port and the data
dir the README chose are swapped for a free port and a temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_PORT = "8080"
README_DATA_DIR = "/tmp/watui-demo"


def headless_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Headless mode", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_has_the_server_block_and_the_client_block() -> None:
    server, client = headless_blocks()
    assert server.strip().startswith("make serve") and f"PORT={README_PORT}" in server
    assert README_DATA_DIR in server and README_DATA_DIR in client and README_PORT in client
    assert "ses_…" not in client  # placeholders that answer 422 when pasted


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("make") is None,
                    reason="the README's commands need curl and make")
def test_the_headless_commands_run_as_written(tmp_path: Path) -> None:
    server_block, client_block = headless_blocks()
    port, data_dir = str(free_port()), str(tmp_path / "data")

    def local(block: str) -> str:
        return block.replace(f"PORT={README_PORT}", f"PORT={port}").replace(README_DATA_DIR, data_dir)

    server = subprocess.Popen(
        ["bash", "-c", local(server_block)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={**os.environ, "WATUI_SSE_PING_INTERVAL": "0.5"},
    )
    output: list[str] = []
    serving = threading.Event()

    def pump() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            output.append(line)
            if "watui serving on" in line:
                serving.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert serving.wait(120), "".join(output)
        result = subprocess.run(["bash", "-c", local(client_block)], cwd=REPO, capture_output=True,
                                text=True, timeout=90)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    out = result.stdout
    assert result.stderr == "", result.stderr
    assert '"session_id":"ses_' in out
    assert "event: qr" in out and "event: connected" in out, out
    assert '"text":"Hello from watui"' in out and '"status":"sent"' in out, out
    assert '"type":"image","caption":"A pixel"' in out and '"mimetype":"image/png","size":70' in out, out
    assert "200 image/png 70 bytes\n" in out, out  # the received image, downloaded
    assert '"text":"Paced hello"' in out and '"status":"pending"' in out and "} 202\n" in out, out
    assert "id: 1\n" in out  # the replay of the whole log
