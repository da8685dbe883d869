"""Logs: ``--log-format json`` for log shippers, and never a key, secret or URL password."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from watui.logs import redact

REPO = Path(__file__).resolve().parents[1]

KEY = "wat_" + "k3Y-s3cr3t_" * 4
SECRET = "whsec_" + "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0"
URL = "https://alice:hunter2@hooks.example.com/in?access_token=tok3n&x=1"


def test_redact_masks_keys_secrets_tokens_and_url_passwords() -> None:
    text = redact(f"key {KEY} secret {SECRET} url {URL} header Authorization: Bearer {KEY}x")
    for leak in (KEY, SECRET[6:], "hunter2", "tok3n", "k3Y-s3cr3t"):
        assert leak not in text
    assert "https://alice:***@hooks.example.com/in?access_token=***&x=1" in text
    assert redact("a plain line, http://host:8080/path") == "a plain line, http://host:8080/path"


def run_logging(fmt: str) -> list[str]:
    """Log through :func:`watui.logs.configure_logging` in a fresh interpreter, a secret in the
    message and another in an exception's traceback."""
    code = f"""
import logging
from watui.logs import configure_logging
configure_logging({fmt!r})
log = logging.getLogger("watui.test")
log.warning("posting to %s with %s", {URL!r}, {SECRET!r})
try:
    raise RuntimeError("bad key " + {KEY!r})
except RuntimeError:
    log.exception("it failed")
logging.getLogger("uvicorn.error").info("a library line")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_json_logs_are_one_object_a_line_without_secrets() -> None:
    lines = run_logging("json")
    entries = [json.loads(line) for line in lines]
    assert [(e["level"], e["logger"]) for e in entries] == [
        ("warning", "watui.test"), ("error", "watui.test"), ("info", "uvicorn.error")]
    assert "RuntimeError" in entries[1]["exc"]
    for leak in ("hunter2", SECRET[6:], KEY[4:]):
        assert leak not in "\n".join(lines)


def test_text_logs_have_no_secrets_either() -> None:
    lines = run_logging("text")
    assert any("Traceback" in line for line in lines)
    for leak in ("hunter2", SECRET[6:], KEY[4:]):
        assert leak not in "\n".join(lines)


def test_serve_with_json_logs_writes_json_and_keeps_the_admin_key_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "watui", "serve", "--engine", "simulated", "--port", "0",
         "--data-dir", str(data), "--log-format", "json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("watui serving on"):
                break
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    key = (data / "admin.key").read_text().strip()
    assert key.startswith("wat_") and key not in out + err
    entries = [json.loads(line) for line in err.splitlines()]
    assert {"uvicorn.error", "watui.stores.sqlite"} <= {e["logger"] for e in entries}
