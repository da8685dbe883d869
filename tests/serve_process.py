"""A ``watui serve`` subprocess for tests that kill, signal or restart the process (the server
tests and the console's attach tests share it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"watui serving on (http://\S+)")


@dataclass
class ServerProcess:
    """``python -m watui serve --engine simulated`` in a subprocess, on ``port`` (0: one the OS
    picks; a fixed port lets a restart come back at the same address)."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    base_url: str = ""
    output: list[str] = field(default_factory=list)
    port: int = 0

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, "WATUI_SSE_PING_INTERVAL": "0.2", **self.env}
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watui", "serve", "--engine", "simulated", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                match = SERVING.search(line)
                if match:
                    self.base_url = match.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)
