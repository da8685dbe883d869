"""The PostgreSQL connection pools of a process (the store's, the engines' auth rows).

asyncpg resets a connection each time it goes back to its pool: one more round trip, and one
more transaction on the server, with ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL;``. watui keeps no session state on a pooled connection: its advisory
locks are transaction locks (``pg_advisory_xact_lock``), it declares no cursor outside a
transaction, listens to nothing and sets nothing beyond a transaction (a connection's
settings are given when it opens; the lease renewal's ``SET LOCAL`` ends with its
transaction). So its connections skip that query. A transaction left open (a task cancelled
inside one) is still rolled back before the connection is reused: asyncpg's
:meth:`~asyncpg.Connection.reset` does that before it sends the query, and sends none here.

Measured on an idle cluster node: half of the node's round trips to PostgreSQL were these
resets (8 of 16 a second), and each pooled query paid one.
"""

from __future__ import annotations

from typing import Any

import asyncpg


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection whose release to the pool sends no reset query."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, **options: Any) -> asyncpg.Pool:
    """``asyncpg.create_pool`` with :class:`PooledConnection`."""
    return await asyncpg.create_pool(dsn, connection_class=PooledConnection, **options)
