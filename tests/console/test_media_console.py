"""Media in the console, over the local and the remote service: a file attached in the
compose box goes as its type, the message logs show each message's type, size and caption,
and ``s`` in a session's messages saves a message's file to a path you give."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from textual.widgets import Input

from watui.clock import FakeClock
from watui.console.requests import LogKind
from watui.screens.compose import ComposeScreen
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.screens.save_media import SaveMediaScreen
from watui.widgets.detail_pane import DetailPane

from .conftest import AppFactory, act, link, plain, wait_until

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(2037)  # 2,048 bytes
PDF = b"%PDF-1.4\n" + os.urandom(5000)


def toasts(app: Any) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


async def test_attach_a_file_and_see_media_in_the_logs(make_app: AppFactory, clock: FakeClock, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(JPEG)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await pilot.press("m")
        box = app.screen
        assert isinstance(box, ComposeScreen)
        box.query_one("#compose-to", Input).value = "+14155550100"
        box.query_one("#compose-text", Input).value = "the view"
        box.query_one("#compose-file", Input).value = str(photo)
        box.action_send()
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the box closes")
        await wait_until(pilot, lambda: any(t[0] == "Message sent" for t in toasts(app)), "the success toast")
        sent = (await app.service.list_messages(alpha.id)).messages[0]
        assert (sent.type.value, sent.caption, sent.media and sent.media.size) == ("image", "the view", 2048)
        assert photo.read_bytes() == JPEG  # the user's file is left as it was

        await app.service.simulate(alpha.id, act(
            "message", type="document", caption="the report",
            media={"data": base64.b64encode(PDF).decode(), "filename": "r.pdf"}))
        log = app.screen.query_one(DetailPane).query_one("#detail-messages")
        await wait_until(pilot, lambda: "(document 5.0 KB) the report" in plain(log), "the document in the pane")
        assert "(image 2.0 KB) the view" in plain(log)

        # The messages log offers the newest file; s, a path, enter: saved.
        await app.push_screen(LogScreen(alpha.id, LogKind.MESSAGES))
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SaveMediaScreen), "the save box")
        save = app.screen
        assert isinstance(save, SaveMediaScreen)
        received = (await app.service.list_messages(alpha.id)).messages[0]
        assert save.query_one("#save-message", Input).value == received.message_id
        target = tmp_path / "saved.pdf"
        save.query_one("#save-path", Input).value = str(target)
        save.action_save()
        await wait_until(pilot, lambda: any(t[0] == "File saved" for t in toasts(app)), "the saved toast")
        assert target.read_bytes() == PDF and target.stat().st_mode & 0o777 == 0o600

        # A message with no file says so.
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SaveMediaScreen), "the save box again")
        app.screen.query_one("#save-message", Input).value = "nope"
        app.screen.query_one("#save-path", Input).value = str(tmp_path / "x")
        app.screen.action_save()  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: any(t[0] == "File not saved" for t in toasts(app)), "the refusal")
        assert not (tmp_path / "x").exists()
