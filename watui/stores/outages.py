"""Which database errors mean "the database cannot be reached or cannot write right now"
(an outage, which a retry may get past) as opposed to a bad statement (a bug).

The writer refuses a batch that hits one with :class:`~watui.errors.StoreUnavailable`; the
server answers any read that hits one with the same ``503 STORE_UNAVAILABLE`` and
``Retry-After``, never ``500``.
"""

from __future__ import annotations

import asyncio

import asyncpg

from watui.errors import StoreUnavailable

OUTAGES: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # the connection is closed or broken
    asyncpg.InternalClientError,  # the connection's protocol state is broken (the server hung up)
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory, too many connections
    asyncpg.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
)
"""Errors that mean the database cannot answer or write right now."""


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


def unavailable(exc: BaseException, *, reading: bool = False) -> StoreUnavailable:
    """``exc`` (an outage) as the service reports it."""
    what = "be reached" if reading else "write"
    error = StoreUnavailable(
        f"The store cannot {what} right now ({exc or type(exc).__name__}); nothing was changed. Retry later.",
        details={"reason": str(exc) or type(exc).__name__},
    )
    error.__cause__ = exc
    return error
