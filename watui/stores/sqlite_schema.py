"""The SQLite store's schema: its forward migrations, bringing a database up to date when the
store opens, and the ids the next writes take (read once, when the store opens).
"""

from __future__ import annotations

import logging

from watui.stores.sqlite_writer import SqliteWriter

# The store's records keep one logger name whatever module they come from: watui.logs
# throttles it, and operators filter on it.
log = logging.getLogger("watui.stores.sqlite")

# Forward migrations; index i brings the schema from version i to i + 1. Never edit one that
# has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id    TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        doc   TEXT NOT NULL
    );
    CREATE INDEX sessions_owner ON sessions(owner);
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        type       TEXT NOT NULL,
        session_id TEXT NOT NULL,
        owner      TEXT NOT NULL,
        ts         TEXT NOT NULL,
        payload    TEXT NOT NULL
    );
    CREATE INDEX events_session ON events(session_id, id);
    CREATE INDEX events_owner ON events(owner, id);
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('admin', 'user')),
        key_hash   TEXT NOT NULL UNIQUE,
        prefix     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        direction  TEXT NOT NULL,
        chat       TEXT NOT NULL,
        text       TEXT NOT NULL,
        message_id TEXT,
        status     TEXT NOT NULL,
        error      TEXT,
        ts         TEXT NOT NULL
    );
    CREATE INDEX messages_session ON messages(session_id, id);
    """,
    # 1 -> 2: the webhook outbox (watui/webhooks/outbox.py) and its attempts log.
    """
    CREATE TABLE webhook_deliveries (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         INTEGER NOT NULL,
        session_id       TEXT NOT NULL,
        webhook_id       TEXT NOT NULL UNIQUE,
        url              TEXT NOT NULL,
        secret           TEXT,
        status           TEXT NOT NULL
                         CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT,
        last_status_code INTEGER,
        last_error       TEXT,
        created_at       TEXT NOT NULL,
        delivered_at     TEXT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
    CREATE TABLE webhook_attempts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt     INTEGER NOT NULL,
        ts          TEXT NOT NULL,
        status_code INTEGER,
        error       TEXT,
        duration_ms REAL NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);
    """,
    # 2 -> 3: receipts find a sent message by WhatsApp's id.
    """
    CREATE INDEX messages_message_id ON messages(session_id, message_id);
    """,
    # 3 -> 4: retention finds the oldest event a pending webhook delivery still has to send
    # (watui/manager/retention.py keeps it and everything after it).
    """
    CREATE INDEX webhook_deliveries_pending_event ON webhook_deliveries(event_id)
        WHERE status = 'pending';
    """,
    # 4 -> 5: message statistics (watui/stores/stats.py) group a session's messages by day,
    # direction and status; this index covers both of its queries.
    """
    CREATE INDEX messages_stats ON messages(session_id, ts, direction, status);
    """,
    # 5 -> 6: messages of every type (issue 21): the type, and what goes with it beside the
    # text (a media descriptor, a location, a contact) as JSON; statistics count by type.
    """
    ALTER TABLE messages ADD COLUMN type TEXT NOT NULL DEFAULT 'text';
    ALTER TABLE messages ADD COLUMN details TEXT;
    CREATE INDEX messages_type ON messages(session_id, type);
    """,
    # 6 -> 7: idempotency keys of sends (watui/manager/sent_keys.py): a retry with the same
    # key never sends twice; message_row is the message it sent (null while it is sending).
    """
    CREATE TABLE sent_keys (
        session_id  TEXT NOT NULL,
        key         TEXT NOT NULL,
        message_row INTEGER,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    CREATE INDEX sent_keys_created ON sent_keys(created_at);
    """,
    # 7 -> 8: pacing (watui/manager/pacing.py): the sends still waiting in a session's queue,
    # found at start-up without reading every message.
    """
    CREATE INDEX messages_pending ON messages(session_id, id) WHERE status = 'pending';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(writer: SqliteWriter) -> None:
    """Bring the database's schema up to :data:`SCHEMA_VERSION`, one transaction per
    migration; refuse a database that a newer watui wrote."""
    rows = await writer.execute_fetchall("PRAGMA user_version")
    version = int(rows[0][0]) if rows else 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this watui ({SCHEMA_VERSION})"
        )
    for target in range(version, SCHEMA_VERSION):
        log.info("migrating store schema %d -> %d", target, target + 1)
        await writer.executescript(
            "BEGIN IMMEDIATE;\n" + MIGRATIONS[target] + f"\nPRAGMA user_version={target + 1};\nCOMMIT;"
        )


async def next_ids(writer: SqliteWriter) -> tuple[int, int]:
    """The (event, message) ids the next writes take."""
    # AUTOINCREMENT's sqlite_sequence remembers the highest id ever used, so ids are never
    # reused even if rows were removed.
    seq = {name: value for name, value in await writer.execute_fetchall(
        "SELECT name, seq FROM sqlite_sequence"
    )}
    for table in ("events", "messages"):
        rows = await writer.execute_fetchall(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        seq[table] = max(int(seq.get(table, 0)), int(rows[0][0]) if rows else 0)
    return seq["events"] + 1, seq["messages"] + 1
