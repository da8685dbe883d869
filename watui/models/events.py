"""The append-only event log's rows: :class:`Event` (stored, with its id) and
:class:`NewEvent` (before the store gives it one)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watui.machine import EventType
from watui.models.base import isoformat, utcnow


class Event(BaseModel):
    """One row of the append-only event log. ``id`` is the SSE ``id:``."""

    model_config = ConfigDict(frozen=True)

    id: int
    type: EventType
    session_id: str
    owner: str
    timestamp: datetime
    payload: dict[str, Any]

    def data(self) -> dict[str, Any]:
        """The SSE ``data:`` object: the payload plus ``session_id`` and ``timestamp``."""
        return {**self.payload, "session_id": self.session_id, "timestamp": isoformat(self.timestamp)}

    @classmethod
    def committed(cls, new: NewEvent, id: int) -> Event:
        """``new`` as logged with ``id``, without validating its fields a second time.

        The store makes one Event per event it commits, on the event loop; validating what
        :class:`NewEvent` already validated was a sixth of the store's time per event. The
        fields are the same by name and type (a test holds the two classes to it), so this
        builds the instance ``Event(id=id, **fields)`` would, sharing ``new``'s payload dict
        (nothing changes a payload once it is logged)."""
        event = _new_object(cls)
        _set(event, "__dict__", {"id": id, **new.__dict__})
        _set(event, "__pydantic_fields_set__", set(_EVENT_FIELDS))
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


class NewEvent(BaseModel):
    """An event before the store has given it an id."""

    type: EventType
    session_id: str
    owner: str
    timestamp: datetime = Field(default_factory=utcnow)
    payload: dict[str, Any] = Field(default_factory=dict)


_EVENT_FIELDS = tuple(Event.model_fields)
_new_object = object.__new__
_set = object.__setattr__
