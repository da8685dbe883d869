"""The small differences between the two stores' SQL, in one place, so a module that sends its
own SQL (the webhook outbox, retention, the revoked-key watcher, stream snapshots) writes each
statement once and asks :func:`sql_for` for the dialect of the store it was given.

What differs:

- placeholders: SQLite takes ``?``; PostgreSQL ``$1, $2, …``. Statements are written with
  ``?`` and :meth:`SqlDialect.sql` numbers them for PostgreSQL (the SQL written here never has
  a ``?`` inside a string literal);
- timestamps: SQLite keeps UTC ISO-8601 text with microseconds (sortable as text);
  PostgreSQL ``timestamptz``, which asyncpg reads and writes as ``datetime``;
- a list parameter: SQLite gets a JSON array and reads it with ``json_each``; PostgreSQL gets
  an array and compares with ``= ANY`` / ``<> ALL``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watui.stores.base import Dialect, StoreProtocol

_PLACEHOLDER = re.compile(r"\?")


@dataclass(frozen=True)
class SqlDialect:
    """How to write one statement for one backend."""

    name: Dialect

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def sql(self, text: str) -> str:
        """``text`` written with ``?`` placeholders, in this dialect."""
        if not self.postgres:
            return text
        numbers = iter(range(1, text.count("?") + 1))
        return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", text)

    def ts(self, value: datetime | None) -> str | datetime | None:
        """A timestamp as a parameter."""
        if value is None or self.postgres:
            return value
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    @staticmethod
    def read_ts(value: str | datetime | None) -> datetime | None:
        """A timestamp column as read (text on SQLite, ``datetime`` on PostgreSQL)."""
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    def values(self, items: Sequence[Any]) -> str | list[Any]:
        """A list as one parameter, for :meth:`member` and :meth:`not_member`."""
        return list(items) if self.postgres else json.dumps(list(items))

    def member(self, column: str) -> str:
        """``column`` is one of a :meth:`values` parameter (one ``?``)."""
        return f"{column} = ANY(?)" if self.postgres else f"{column} IN (SELECT value FROM json_each(?))"

    def not_member(self, column: str) -> str:
        """``column`` is none of a :meth:`values` parameter (one ``?``; ``column`` not null)."""
        return f"{column} <> ALL(?)" if self.postgres else f"{column} NOT IN (SELECT value FROM json_each(?))"


SQLITE = SqlDialect("sqlite")
POSTGRESQL = SqlDialect("postgresql")


def sql_for(store: StoreProtocol) -> SqlDialect:
    """The dialect of ``store``'s ``fetchall`` and ``write(statements=...)``."""
    return POSTGRESQL if store.dialect == "postgresql" else SQLITE
