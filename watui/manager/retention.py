"""Retention: old events, messages and finished webhook deliveries are pruned.

Without it the log grows for ever. Once at start-up and then every hour (sooner when a
retention period is shorter than that), one pass deletes:

- events older than ``event_retention_days`` (a ``/v1/events`` resume from before the oldest
  kept event is then answered ``410 EVENTS_EXPIRED``), with the finished webhook deliveries of
  theirs;
- messages older than ``message_retention_days``;
- finished webhook deliveries (delivered, failed, dead) older than ``webhook_retention_days``,
  with their attempts;
- media files (sent and received) stored more than ``media_retention_days`` ago, then the
  oldest ones until all of them fit ``media_max_total_bytes`` (:mod:`watui.media.storage`);
  their messages stay, and ``GET …/media`` answers ``404 MEDIA_NOT_FOUND``.

**A pending webhook delivery is never pruned**, and neither is its event, which is what it
sends (the outbox joins the event for its body): the events pass stops below the oldest event
that a pending delivery still waits to send. Events past their retention stay, in one piece
from there on (the log has no holes, so ``410 EVENTS_EXPIRED`` and ``oldest_id`` keep their
meaning), until that delivery is delivered or given up: the dispatcher marks a delivery
``dead`` once ``webhook_max_age`` has passed since it was queued, so a receiver that never
comes back holds events that long at most. A pass that keeps old events for this says so in
its log line.

The log line counts what went: deliveries deleted with their events count too.

Deletes go through the store's writer in bounded chunks, so a large first pass does not hold
the writer (and every session's writes) for long.

Both stores: the SQL is written once and put in the store's dialect by
:func:`watui.stores.dialects.sql_for`. In a cluster every node runs this pass on the one
PostgreSQL database, maybe at the same moment. That is safe: each delete is idempotent (rows
below a bound *and* older than a cutoff), and on PostgreSQL each one takes its rows
``FOR UPDATE SKIP LOCKED``, so two nodes pruning at once never wait for each other (or
deadlock): each deletes the rows the other has not locked. Counts are then only what this node
saw, which is all they are used for (the log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from watui.clock import Clock
from watui.config import Settings
from watui.manager.sent_keys import KEPT
from watui.media.storage import MediaStorage, clean_staging
from watui.stores.base import StoreProtocol
from watui.stores.dialects import sql_for

log = logging.getLogger(__name__)

CHUNK = 5000
"""Rows per delete transaction."""
STAGED_FOR = 86400.0
"""Seconds a staged media file (a send or a download cut short by a crash) is left before
retention deletes it."""
MAX_INTERVAL = 3600.0
MIN_INTERVAL = 1.0


@dataclass
class Pruned:
    events: int = 0
    messages: int = 0
    deliveries: int = 0
    """Finished deliveries deleted, with their events or for their age."""
    held: int = 0
    """Events past their retention kept for pending webhook deliveries (see the module doc)."""
    media_files: int = 0
    media_bytes: int = 0


class Retention:
    """Prunes the store on a timer; :meth:`prune` is one pass."""

    def __init__(
        self, store: StoreProtocol, settings: Settings, clock: Clock, *, media: MediaStorage | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.media = media
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        """Seconds between passes: an hour, or a tenth of the shortest period if shorter."""
        shortest = min(self.settings.event_retention_days, self.settings.message_retention_days,
                       self.settings.webhook_retention_days, self.settings.media_retention_days) * 86400
        return max(MIN_INTERVAL, min(MAX_INTERVAL, shortest / 10))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="watui-retention")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                pruned = await self.prune()
                if pruned.events or pruned.messages or pruned.deliveries:
                    log.info("retention pruned %d events, %d messages, %d webhook deliveries",
                             pruned.events, pruned.messages, pruned.deliveries)
                if pruned.media_files:
                    log.info("retention deleted %d media files (%d bytes)", pruned.media_files, pruned.media_bytes)
                if pruned.held:
                    log.info("retention kept %d events past their retention for pending webhook"
                             " deliveries", pruned.held)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be failing; try again next time
                log.warning("retention pass failed: %s", exc)
            await asyncio.sleep(self.interval)

    def _cutoff(self, days: float) -> datetime:
        return self.clock.now() - timedelta(days=days)

    def _delete(self, table: str, where: str) -> str:
        """``DELETE FROM table WHERE where``; on PostgreSQL only the rows no other node is
        deleting (or sending) right now (see the module doc)."""
        d = sql_for(self.store)
        if not d.postgres:
            return f"DELETE FROM {table} WHERE {where}"
        return d.sql(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} FOR UPDATE SKIP LOCKED)")

    async def prune(self) -> Pruned:
        """One pass; returns how many rows of each kind went (and how many old events stayed
        for pending deliveries)."""
        pruned = Pruned()
        pruned.events, pruned.deliveries, pruned.held = await self._prune_events()
        pruned.messages = await self._prune_messages()
        pruned.deliveries += await self._prune_deliveries()
        d = sql_for(self.store)
        await self.store.write(statements=[(  # idempotency keys of sends are kept a day
            d.sql("DELETE FROM sent_keys WHERE created_at < ?"), (d.ts(self.clock.now() - KEPT),))])
        if self.media is not None:
            pruned.media_files, pruned.media_bytes = await self.media.prune(
                before=self._cutoff(self.settings.media_retention_days),
                max_total_bytes=self.settings.media_max_total_bytes,
            )
            await asyncio.to_thread(clean_staging, self.settings.data_dir, older_than=STAGED_FOR)
        return pruned

    async def _first_kept(self, table: str, cutoff: datetime) -> int | None:
        """The smallest id in ``table`` with ``ts`` at or after ``cutoff``; ids grow with time,
        so everything below it is older (``None``: every row is older)."""
        d = sql_for(self.store)
        rows = await self.store.fetchall(
            d.sql(f"SELECT id FROM {table} WHERE ts >= ? ORDER BY id LIMIT 1"), (d.ts(cutoff),)
        )
        return int(rows[0][0]) if rows else None

    async def _delete_below(self, table: str, bound: int, cutoff: datetime) -> int:
        """Delete rows of ``table`` with ``id < bound`` (and older than ``cutoff``), in chunks."""
        d = sql_for(self.store)
        rows = await self.store.fetchall(
            d.sql(f"SELECT MIN(id), COUNT(*) FROM {table} WHERE id < ? AND ts < ?"), (bound, d.ts(cutoff))
        )
        low, count = rows[0][0], int(rows[0][1])
        if low is None:
            return 0
        for start in range(int(low), bound, CHUNK):
            end = min(start + CHUNK, bound)
            await self.store.write(statements=[(
                self._delete(table, "id >= ? AND id < ? AND ts < ?"), (start, end, d.ts(cutoff))
            )])
        return count

    async def _oldest_pending_event(self) -> int | None:
        """The oldest event a pending delivery still waits to send (an index on exactly these
        rows, ``webhook_deliveries_pending_event``, makes this one index read)."""
        rows = await self.store.fetchall(
            "SELECT MIN(event_id) FROM webhook_deliveries WHERE status = 'pending'"
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _prune_events(self) -> tuple[int, int, int]:
        """(events deleted, deliveries deleted with them, old events kept for pending ones)."""
        cutoff = self._cutoff(self.settings.event_retention_days)
        first = await self._first_kept("events", cutoff)
        bound = first if first is not None else self.store.last_committed_id + 1
        # New pending rows are only ever queued with new events (above the bound), so once
        # this is read no pending row can appear below it.
        waiting = await self._oldest_pending_event()
        held = 0
        if waiting is not None and waiting < bound:
            d = sql_for(self.store)
            rows = await self.store.fetchall(
                d.sql("SELECT COUNT(*) FROM events WHERE id >= ? AND id < ? AND ts < ?"),
                (waiting, bound, d.ts(cutoff)),
            )
            held, bound = int(rows[0][0]), waiting
        count = await self._delete_below("events", bound, cutoff)
        deliveries = 0
        if count:
            # Their deliveries (all finished: see above) have no body left to send.
            d = sql_for(self.store)
            where = "event_id < ? AND status <> 'pending'"
            rows = await self.store.fetchall(
                d.sql(f"SELECT COUNT(*) FROM webhook_deliveries WHERE {where}"), (bound,)
            )
            deliveries = int(rows[0][0])
            if deliveries:
                await self.store.write(statements=[(self._delete("webhook_deliveries", where), (bound,))])
        return count, deliveries, held

    async def _prune_messages(self) -> int:
        cutoff = self._cutoff(self.settings.message_retention_days)
        first = await self._first_kept("messages", cutoff)
        if first is None:
            rows = await self.store.fetchall("SELECT COALESCE(MAX(id), 0) FROM messages")
            first = int(rows[0][0]) + 1
        return await self._delete_below("messages", first, cutoff)

    async def _prune_deliveries(self) -> int:
        cutoff = self._cutoff(self.settings.webhook_retention_days)
        d = sql_for(self.store)
        where = "status IN ('delivered', 'failed', 'dead') AND created_at < ?"
        rows = await self.store.fetchall(
            d.sql(f"SELECT COUNT(*) FROM webhook_deliveries WHERE {where}"), (d.ts(cutoff),)
        )
        count = int(rows[0][0])
        if count:
            await self.store.write(statements=[(self._delete("webhook_deliveries", where), (d.ts(cutoff),))])
        return count
