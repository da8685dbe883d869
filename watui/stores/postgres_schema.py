"""The PostgreSQL store's schema: its forward migrations, the version they reach, and
:func:`migrate`, which brings a database up to that version.

Migrations are versioned in ``watui_schema`` and run under an advisory lock, so nodes that
start together migrate once.
"""

from __future__ import annotations

import logging

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x77617475  # "watu": the advisory lock nodes take to migrate one at a time

# Forward migrations; index i brings the schema from version i to i + 1. Never edit one that
# has shipped: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE event_seq (
        one  boolean PRIMARY KEY DEFAULT true CHECK (one),
        last bigint NOT NULL
    );
    INSERT INTO event_seq(one, last) VALUES (true, 0);
    CREATE TABLE sessions (
        id    text PRIMARY KEY,
        owner text NOT NULL,
        doc   text NOT NULL,
        seq   bigserial NOT NULL
    );
    CREATE INDEX sessions_owner ON sessions(owner);
    CREATE TABLE events (
        id         bigint PRIMARY KEY,
        type       text NOT NULL,
        session_id text NOT NULL,
        owner      text NOT NULL,
        ts         timestamptz NOT NULL,
        payload    text NOT NULL
    );
    CREATE INDEX events_session ON events(session_id, id);
    CREATE INDEX events_owner ON events(owner, id);
    CREATE TABLE api_keys (
        id         text PRIMARY KEY,
        owner      text NOT NULL,
        role       text NOT NULL CHECK (role IN ('admin', 'user')),
        key_hash   text NOT NULL UNIQUE,
        prefix     text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
    );
    CREATE TABLE messages (
        id         bigserial PRIMARY KEY,
        session_id text NOT NULL,
        direction  text NOT NULL,
        chat       text NOT NULL,
        text       text NOT NULL,
        message_id text,
        status     text NOT NULL,
        error      text,
        ts         timestamptz NOT NULL
    );
    CREATE INDEX messages_session ON messages(session_id, id);
    CREATE INDEX messages_message_id ON messages(session_id, message_id);
    CREATE TABLE webhook_deliveries (
        id               bigserial PRIMARY KEY,
        event_id         bigint NOT NULL,
        session_id       text NOT NULL,
        webhook_id       text NOT NULL UNIQUE,
        url              text NOT NULL,
        secret           text,
        status           text NOT NULL
                         CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz,
        last_status_code integer,
        last_error       text,
        created_at       timestamptz NOT NULL,
        delivered_at     timestamptz
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_session ON webhook_deliveries(session_id, id);
    CREATE TABLE webhook_attempts (
        id          bigserial PRIMARY KEY,
        delivery_id bigint NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt     integer NOT NULL,
        ts          timestamptz NOT NULL,
        status_code integer,
        error       text,
        duration_ms double precision NOT NULL
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);
    """,
    # Cluster mode (watui.cluster, docs/cluster.md "Leases and fencing"): the nodes table, the
    # leases with their fencing tokens (from a sequence, so a token is never given twice), and
    # which sessions want a node. The backfill spells out watui.machine.wants_node as it is
    # today; from here on the store's session upsert keeps the column with that function.
    """
    CREATE TABLE nodes (
        node_id      text PRIMARY KEY,
        url          text NOT NULL,
        started_at   timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        capacity     integer NOT NULL,
        sessions     integer NOT NULL DEFAULT 0
    );
    CREATE SEQUENCE lease_token;
    CREATE TABLE leases (
        session_id text PRIMARY KEY,
        owner      text NOT NULL,
        node_id    text NOT NULL,
        token      bigint NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX leases_owner ON leases(owner, expires_at);
    CREATE INDEX leases_node ON leases(node_id, expires_at);
    ALTER TABLE sessions ADD COLUMN wants_node boolean NOT NULL DEFAULT false;
    UPDATE sessions SET wants_node = (doc::jsonb ->> 'status') IN
        ('initializing', 'qr_ready', 'connecting', 'connected')
        OR ((doc::jsonb ->> 'status') = 'disconnected'
            AND coalesce((doc::jsonb ->> 'autostart')::boolean, false));
    CREATE INDEX sessions_wants_node ON sessions(id) WHERE wants_node;
    """,
    # Outbox claims (watui/webhooks/outbox.py): the node sending a row, and until when its
    # claim holds; a claim that ran out (its node died) is taken over by another node.
    """
    ALTER TABLE webhook_deliveries ADD COLUMN claimed_by text;
    ALTER TABLE webhook_deliveries ADD COLUMN claimed_until timestamptz;
    CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries(claimed_by)
        WHERE claimed_by IS NOT NULL;
    """,
    # Retention finds the oldest event a pending webhook delivery still has to send
    # (watui/manager/retention.py keeps it and everything after it).
    """
    CREATE INDEX webhook_deliveries_pending_event ON webhook_deliveries(event_id)
        WHERE status = 'pending';
    """,
    # Message statistics (watui/stores/stats.py) group a session's messages by day, direction
    # and status; this index covers both of their queries.
    """
    CREATE INDEX messages_stats ON messages(session_id, ts, direction, status);
    """,
    # One node id, one process (docs/cluster.md "Node identity"): each process of a node is an
    # instance with a random id, recorded with its heartbeat (and where it runs) and on each
    # lease it holds, so renewals and releases match the instance, never the node id alone.
    """
    ALTER TABLE nodes ADD COLUMN instance text NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN host text NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN pid integer;
    ALTER TABLE leases ADD COLUMN instance text NOT NULL DEFAULT '';
    """,
    # Messages of every type (issue 21): the type, and what goes with it beside the text (a
    # media descriptor, a location, a contact) as JSON; statistics count by type. Media files
    # live here too (watui/media/storage.py, docs/cluster.md "Media"): a row per file, its
    # bytes in 1 MiB chunks stored uncompressed (media is compressed already).
    """
    ALTER TABLE messages ADD COLUMN type text NOT NULL DEFAULT 'text';
    ALTER TABLE messages ADD COLUMN details text;
    CREATE INDEX messages_type ON messages(session_id, type);
    CREATE TABLE media (
        id         text PRIMARY KEY,
        session_id text NOT NULL,
        size       bigint NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX media_session ON media(session_id);
    CREATE INDEX media_created ON media(created_at);
    CREATE TABLE media_chunks (
        media_id text NOT NULL,
        seq      integer NOT NULL,
        data     bytea NOT NULL,
        PRIMARY KEY (media_id, seq)
    );
    ALTER TABLE media_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    """,
    # Which cluster this database is (watui/cluster/identity.py): its id namespaces Redis keys,
    # its secret signs node-to-node calls. And session names unique per owner in the database
    # (as watui.models.name_key compares them), so two nodes cannot both create one name:
    # ``name_key`` is written with each snapshot; rows already there get PostgreSQL's
    # approximation of it, and of names that already collide only the oldest keeps its key.
    """
    CREATE TABLE cluster (
        one        boolean PRIMARY KEY DEFAULT true CHECK (one),
        id         text NOT NULL,
        secret     text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE sessions ADD COLUMN name_key text;
    UPDATE sessions s SET name_key = k.key FROM (
        SELECT id, lower(normalize(doc::jsonb ->> 'name', NFKC)) AS key,
               row_number() OVER (PARTITION BY owner, lower(normalize(doc::jsonb ->> 'name', NFKC))
                                  ORDER BY seq) AS n
        FROM sessions
    ) k WHERE s.id = k.id AND k.n = 1;
    CREATE UNIQUE INDEX sessions_owner_name ON sessions(owner, name_key);
    """,
    # Idempotency keys of sends (watui/manager/sent_keys.py), shared by every node: a retry
    # with the same key never sends twice, whichever node it reaches.
    """
    CREATE TABLE sent_keys (
        session_id  text NOT NULL,
        key         text NOT NULL,
        message_row bigint,
        created_at  timestamptz NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    CREATE INDEX sent_keys_created ON sent_keys(created_at);
    """,
    # pacing (watui/manager/pacing.py): the sends still waiting in a session's queue, found
    # at start-up and on a takeover without reading every message.
    """
    CREATE INDEX messages_pending ON messages(session_id, id) WHERE status = 'pending';
    """,
    # Lease renewals as HOT updates (docs/cluster.md, "What the leases cost PostgreSQL"): a
    # renewal changes only ``expires_at``, and with no index on it PostgreSQL rewrites the row
    # in place on its page instead of adding an entry to every index for each lease, every
    # second. Room is left on each page for the new versions. The queries that filtered on
    # ``expires_at`` through these indexes filter the node's or owner's rows instead.
    """
    DROP INDEX leases_owner;
    DROP INDEX leases_node;
    CREATE INDEX leases_owner ON leases(owner);
    CREATE INDEX leases_node ON leases(node_id);
    ALTER TABLE leases SET (fillfactor = 70);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: asyncpg.Connection, schema: str | None) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` (creating ``schema`` first, if named) in
    one transaction, under :data:`MIGRATION_LOCK`."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        if schema:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute("CREATE TABLE IF NOT EXISTS watui_schema (version integer NOT NULL)")
        version = await conn.fetchval("SELECT version FROM watui_schema")
        if version is None:
            version = 0
            await conn.execute("INSERT INTO watui_schema(version) VALUES (0)")
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this watui ({SCHEMA_VERSION})"
            )
        for target in range(version, SCHEMA_VERSION):
            log.info("migrating PostgreSQL schema %d -> %d", target, target + 1)
            await conn.execute(MIGRATIONS[target])
            await conn.execute("UPDATE watui_schema SET version = $1", target + 1)
