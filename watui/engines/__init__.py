"""Engines report facts about a WhatsApp connection; the manager decides what they mean."""

from watui.engines.base import (
    Engine,
    EngineEvent,
    EngineSession,
    IncomingMessage,
    LoggedOut,
    PairSuccess,
    QrCodeIssued,
    Report,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)

__all__ = [
    "Engine",
    "EngineEvent",
    "EngineSession",
    "IncomingMessage",
    "LoggedOut",
    "PairSuccess",
    "QrCodeIssued",
    "Report",
    "SessionConnected",
    "SessionDisconnected",
    "SessionError",
]
