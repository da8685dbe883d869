"""The calls watui makes on a connected neonize client: log out, a pairing code, send.

Each runs on a thread of its own (:func:`.go._in_thread`: the Go call blocks) through
:meth:`.run._Run.call`, which refuses once the client is (being) torn down, and turns
neonize's failures into :class:`.run.NeonizeEngineError`. :class:`.NeonizeSession` offers
them as the engine protocol's ``logout``, ``pair_phone``, ``send_text`` and ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from watui.engines.base import MESSAGE_TYPES, Outgoing
from watui.engines.neonize.go import _in_thread
from watui.engines.neonize.mapping import outgoing_text
from watui.engines.neonize.media import MEDIA_TYPES, build_outgoing
from watui.engines.neonize.run import NeonizeEngineError, _Run

if TYPE_CHECKING:
    from neonize.client import NewClient

log = logging.getLogger(__name__)


async def log_out(run: _Run | None, session_id: str) -> None:
    """Unlink from the phone when the run is connected; a failure is only logged (offline or
    already unlinked: the session still forgets the link locally)."""
    if run is not None and run.in_loop and not run.returned.is_set():
        try:
            await _in_thread(lambda: run.call("log out", lambda api: api.logout()))
        except Exception as exc:  # offline or already unlinked: still forget it locally
            log.warning("session %s: logout on WhatsApp failed: %s", session_id, exc)


async def request_pair_code(run: _Run | None, phone_number: str, timeout: float) -> str:
    """Ask WhatsApp for an 8-character linking code (needs the QR phase to have begun, which
    it waits up to ``timeout`` seconds for)."""
    phone = _normalise_phone(phone_number)
    if run is None:
        raise NeonizeEngineError("cannot request a pairing code: the session is not started")
    if not run.first_qr.is_set():
        # whatsmeow only accepts PairPhone once the server offered the first QR code.
        try:
            await asyncio.wait_for(run.first_qr.wait(), timeout)
        except TimeoutError:
            raise NeonizeEngineError(
                "cannot request a pairing code: WhatsApp did not start pairing"
            ) from None

    def pair(api: NewClient) -> str:
        from neonize.utils.enum import ClientName, ClientType

        return str(api.PairPhone(phone, True, ClientName.LINUX, ClientType.CHROME))

    try:
        return await _in_thread(lambda: run.call("request a pairing code", pair))
    except NeonizeEngineError:
        raise
    except Exception as exc:
        raise NeonizeEngineError(f"pairing code request failed: {exc}") from exc


async def send_text_message(run: _Run | None, to: str, text: str) -> str:
    """Send ``text`` to the phone number ``to``; returns WhatsApp's message id."""
    return await send_message(run, to, Outgoing("text", text))


async def send_message(run: _Run | None, to: str, message: Outgoing) -> str:
    """Send a message of any type to the phone number ``to``; returns WhatsApp's message id.

    A media message's file is read, encrypted and uploaded first (all on the call's thread),
    then the message goes out (see :mod:`.media`)."""
    phone = _normalise_phone(to)
    _check(message)
    if run is None or not run.in_loop or run.returned.is_set():
        raise NeonizeEngineError("cannot send: the session is not connected")

    def send(api: NewClient) -> str:
        from neonize.utils.jid import build_jid

        body = outgoing_text(message.text) if message.type == "text" else build_outgoing(api, message)
        return str(api.send_message(build_jid(phone), body).ID)

    try:
        return await _in_thread(lambda: run.call("send", send))
    except NeonizeEngineError:
        raise
    except Exception as exc:
        raise NeonizeEngineError(f"sending to {phone} failed: {exc}") from exc


def _check(message: Outgoing) -> None:
    """Refuse, before anything is uploaded, a message its type's fields are missing from."""
    kind = message.type
    if kind not in MESSAGE_TYPES:
        raise NeonizeEngineError(f"cannot send a message of type {kind!r}")
    if kind in MEDIA_TYPES and message.media is None:
        raise NeonizeEngineError(f"cannot send: a {kind} message needs its media")
    if kind == "location" and message.location is None:
        raise NeonizeEngineError("cannot send: a location message needs a location")
    if kind == "contact" and message.contact is None:
        raise NeonizeEngineError("cannot send: a contact message needs a contact")


def _normalise_phone(value: str) -> str:
    """Digits of an international number (``+49 170-1234567`` → ``491701234567``)."""
    digits = value.strip().removeprefix("+").replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise NeonizeEngineError(f"not a phone number in international format: {value!r}")
    return digits
