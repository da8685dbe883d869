"""The session manager: a thin front that opens, wires and closes its collaborators.

- :class:`~watui.manager.registry.Registry`: sessions, names, locks, per-owner active slots;
- :class:`~watui.manager.journal.Journal`: the only writer (transition, persist, publish);
- :class:`~watui.manager.runtime.Supervisor`: runtimes, timers, the inbox loop;
- :class:`~watui.manager.lifecycle.Lifecycle`: what engine facts and timers do to a session;
- :class:`~watui.manager.commands.Commands`: create, start, stop, ... (the public commands);
- start-up restore (watui/manager/restore.py) and chat traffic (watui/manager/messaging.py).

Callers see one object: the service (:class:`~watui.manager.scoped.ScopedService`), the server
and the console hold a ``SessionManager`` and nothing below it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from watui.bus import EventBus
from watui.clock import Clock, FakeClock, RealClock
from watui.config import Settings
from watui.engines.base import Engine
from watui.engines.factory import build_engine
from watui.machine import RUNNING, Status, Trigger
from watui.manager import messaging
from watui.manager.admission import Admission
from watui.manager.commands import Commands
from watui.manager.handover import Handover
from watui.manager.journal import Journal, cleared_link_state
from watui.manager.lifecycle import Lifecycle
from watui.manager.pacing import Pacer
from watui.manager.placement import LeasePlacement
from watui.manager.registry import Registry
from watui.manager.restore import Restorer
from watui.manager.retention import Retention
from watui.manager.runtime import Supervisor
from watui.manager.scoped import ScopedService
from watui.manager.sent_keys import SentKeys
from watui.media.storage import media_storage
from watui.models import (
    Caller,
    Message,
    PairCode,
    QrCode,
    RestoreProgress,
    Session,
    SessionCreate,
    SessionUpdate,
    SimulateRequest,
)
from watui.stores.base import StoreProtocol
from watui.stores.datadir import DataDirLock, make_private
from watui.stores.local import open_data_dir
from watui.webhooks import WebhookDispatcher

if TYPE_CHECKING:
    from watui.cluster.node import ClusterNode


class SessionManager:
    def __init__(self, settings: Settings, store: StoreProtocol, engine: Engine, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.clock = clock
        self.bus = EventBus(store, queue_size=settings.subscriber_queue_size)
        self.registry = Registry(settings.max_active_sessions_per_owner)
        self.journal = Journal(store, clock, self.registry)
        self.sent_keys = SentKeys(store, clock)
        """Idempotency keys of sends (``Idempotency-Key``)."""
        self.journal.media = media_storage(store, settings.data_dir)
        self.supervisor = Supervisor(settings, engine, clock, self.registry)
        self.lifecycle = Lifecycle(settings, engine, clock, self.registry, self.journal, self.supervisor)
        self.supervisor.handler = self.lifecycle
        self.admission = Admission(settings.node_capacity, settings.overload_lag_ms / 1000, self.supervisor.runtimes)
        """Whether this node takes on one more running session (capacity, loop lag); the
        server gives it its lag probe (watui/server/metrics.py)."""
        self.pacer = Pacer(settings, clock, self.registry, self.journal, self.supervisor, messaging.deliver)
        """Paced sends' queues (``settings.send_rate``)."""
        self.journal.on_change.append(self.pacer.on_change)
        self.commands = Commands(
            settings, engine, clock, self.registry, self.journal, self.supervisor, self.lifecycle, self.admission,
            self.pacer,
        )
        self.on_session_change: list[Callable[[Session], None]] = self.journal.on_change
        """Called with each snapshot that was written (the same list as the journal's)."""
        self.webhooks: WebhookDispatcher | None = None
        self.restore_progress: RestoreProgress | None = None
        """Set while start-up restore is under way (``done`` of ``total`` connects made)."""
        self._closing = False
        self._restorer = Restorer(self, concurrency=settings.restore_concurrency)
        self.retention: Retention | None = None
        self.data_lock: DataDirLock | None = None
        """This process's hold on the data dir (set by :meth:`open`; none in a cluster)."""
        self.cluster: ClusterNode | None = None
        """Cluster mode: this process as a node (leases, heartbeats, takeover, fan-out)."""

    # ================================================================ open and close

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Clock | None = None,
        restore: bool = True,
    ) -> SessionManager:
        """Open the store, then restore the sessions that were running, in the background.

        Returns before the restore is done (see watui/manager/restore.py): a server answers while
        hundreds of sessions reconnect a few at a time.
        """
        clock = clock or RealClock()
        if settings.clustered:
            return await cls._open_node(settings, engine=engine, clock=clock)
        lock, store = await open_data_dir(settings)
        try:
            manager = cls(settings, store, engine or build_engine(settings, clock), clock)
        except BaseException:
            await store.close()
            lock.release()
            raise
        manager.data_lock = lock
        if isinstance(clock, FakeClock):
            clock.idle = manager.drain_all
        await manager._load_and_start_services(store)
        if restore:
            manager._restorer.start()
        return manager

    @classmethod
    async def _open_node(cls, settings: Settings, *, engine: Engine | None, clock: Clock) -> SessionManager:
        """Cluster mode: open the shared PostgreSQL store and join the cluster. No start-up
        restore: the node takes over whatever needs a node (docs/cluster.md), its own
        sessions of a previous run included."""
        from watui.cluster.node import ClusterNode
        from watui.stores.postgres import PostgresStore

        assert settings.database_url is not None
        make_private(settings.data_dir)
        store = await PostgresStore.open(
            settings.database_url, max_batch=settings.commit_max_batch,
            stalled_transaction_timeout=settings.lease_ttl / 2,  # its locks go before its leases lapse
        )
        try:
            manager = cls(settings, store, engine or build_engine(settings, clock), clock)
            handover = Handover(manager, store)
            node = manager.cluster = ClusterNode(handover, store, settings)
            manager.supervisor.placement = LeasePlacement(
                node.leases, settings.max_active_sessions_per_owner, settings.node_capacity
            )
            manager.supervisor.on_lease_lost = handover.drop
            manager.journal.node_id = settings.node_id
            manager.bus.follow(node.feed)
            node.feed.on_sessions.append(handover.mirror)
            await node.join()  # before anything runs: another live process may hold the node id
            await manager._load_and_start_services(store)
            await node.start()
        except BaseException:
            await store.close()
            raise
        return manager

    async def _load_and_start_services(self, store: StoreProtocol) -> None:
        self.registry.load(await store.load_sessions())
        self.pacer.shared_store = self.cluster is not None
        await self.pacer.open()  # which sessions have paced sends queued from before
        # Before anything is written: every event from here on is queued for its webhook.
        cluster = self.cluster
        self.webhooks = WebhookDispatcher(
            store, self.settings, sessions=self.registry.sessions, clock=self.clock,
            claimant=f"{cluster.node_id}/{cluster.instance}" if cluster is not None else None,
        )
        self.webhooks.start()
        self.retention = Retention(store, self.settings, self.clock, media=self.journal.media)
        self.retention.start()

    async def aclose(self) -> None:
        """Stop every task, park running sessions so start-up resumes them, flush the store."""
        if self._closing:
            return
        self._closing = True
        await self._restorer.aclose()
        await self.pacer.close()  # what is queued stays stored, pending
        if self.cluster is not None:
            await self.cluster.stop_taking_over()
        ids = list(self.supervisor.runtimes)

        async def park(session_id: str) -> None:
            # Parked first, torn down after (the lock keeps the runtime from acting in
            # between): in a cluster the write needs the lease that the teardown gives up,
            # and once it is given up another node takes the session over.
            async with self.registry.lock(session_id):
                runtime = self.supervisor.runtimes.get(session_id)
                if runtime is None:
                    return
                try:
                    session = self.registry.sessions[session_id]
                    if session.status in RUNNING:
                        await self.journal.apply(
                            session, Trigger.SHUTDOWN, reason="shutdown", changes=cleared_link_state(),
                        )
                finally:
                    await self.supervisor.teardown(runtime)

        for start in range(0, len(ids), 500):
            await asyncio.gather(*(park(i) for i in ids[start : start + 500]), return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.aclose()
        await self.bus.close()
        with contextlib.suppress(Exception):
            await self.engine.aclose()
        if self.webhooks is not None:
            await self.webhooks.aclose()
        if self.retention is not None:
            await self.retention.aclose()
        try:
            await self.store.close()
        finally:
            if self.data_lock is not None:
                self.data_lock.release()

    # ================================================================ the restorer's hooks

    async def _park_crashed(self, session_id: str) -> None:
        """A session still marked running at start-up: the process ended while it ran."""
        async with self.registry.lock(session_id):
            session = self.registry.sessions.get(session_id)
            if session is not None and session.status in RUNNING and session_id not in self.supervisor.runtimes:
                await self.journal.apply(session, Trigger.SHUTDOWN, reason="restart")

    async def _restore_one(self, session_id: str, *, delay: float, on_settled: Callable[[], None]) -> bool:
        """Bring one parked session back; True if ``on_settled`` will be called at its outcome.

        A linked session reconnects after ``delay`` (the restore's jitter); one that was
        pairing starts over with fresh codes.
        """
        async with self.registry.lock(session_id):
            return await self._restore_locked(session_id, delay=delay, on_settled=on_settled)

    async def _restore_locked(
        self, session_id: str, *, delay: float, on_settled: Callable[[], None] | None
    ) -> bool:
        session = self.registry.sessions.get(session_id)
        if (
            self._closing or session is None or not session.autostart
            or session.status is not Status.DISCONNECTED or session_id in self.supervisor.runtimes
        ):
            return False  # stopped, started or deleted meanwhile
        if session.linked and await self.engine.has_auth(session.id, self.settings.auth_path(session.id)):
            runtime = self.supervisor.spawn(session)
            runtime.on_settled = on_settled
            self.lifecycle.schedule_reconnect(runtime, session, delay=delay)
            return True
        await self.commands.start_locked(session, caller=None)
        started = self.supervisor.runtimes.get(session_id)
        if started is None:
            return False  # the start failed at once
        started.on_settled = on_settled
        return True

    # ================================================================ what callers use

    def service(self, caller: Caller) -> ScopedService:
        return ScopedService(self, caller)

    @property
    def simulated(self) -> bool:
        """True when the engine can play the phone (the simulated one, inline or hosted)."""
        return self.engine.plays_phone

    def visible(self, caller: Caller, session_id: str) -> Session:
        return self.registry.visible(caller, session_id)

    def active_count(self, owner: str) -> int:
        return self.registry.active_count(owner)

    async def drain(self, session_id: str) -> None:
        """Wait until the session's runtime has handled everything queued so far."""
        await self.supervisor.drain(session_id)

    async def drain_all(self) -> None:
        """Wait until no runtime has anything left to handle, and no pacing queue is busy
        sending (tests and benchmarks)."""
        await self.supervisor.drain_all(lambda: bool(self._restorer.busy))
        await self.pacer.quiet()

    async def create(self, caller: Caller, spec: SessionCreate) -> Session:
        return await self.commands.create(caller, spec)

    async def start(self, caller: Caller, session_id: str) -> Session:
        return await self.commands.start(caller, session_id)

    async def stop(self, caller: Caller, session_id: str) -> Session:
        return await self.commands.stop(caller, session_id)

    async def restart(self, caller: Caller, session_id: str) -> Session:
        return await self.commands.restart(caller, session_id)

    async def logout(self, caller: Caller, session_id: str) -> Session:
        return await self.commands.logout(caller, session_id)

    async def delete(self, caller: Caller, session_id: str) -> None:
        await self.commands.delete(caller, session_id)

    async def update(self, caller: Caller, session_id: str, patch: SessionUpdate) -> Session:
        return await self.commands.update(caller, session_id, patch)

    async def request_pair_code(self, caller: Caller, session_id: str, phone_number: str) -> PairCode:
        return await self.commands.request_pair_code(caller, session_id, phone_number)

    async def get_qr(self, caller: Caller, session_id: str) -> QrCode:
        return await self.commands.get_qr(caller, session_id)

    async def send_message(self, caller: Caller, session_id: str, to: str, text: str) -> Message:
        return await self.commands.send_message(caller, session_id, to, text)

    async def simulate(self, caller: Caller, session_id: str, request: SimulateRequest) -> Session:
        return await self.commands.simulate(caller, session_id, request)
