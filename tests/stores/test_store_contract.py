"""The store contract, run against both backends (SQLite and PostgreSQL): what one promises,
the other keeps."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watui.machine import EventType
from watui.media.storage import media_storage, staging_dir
from watui.models import (
    ContactInfo,
    LocationInfo,
    MediaInfo,
    MessageDirection,
    MessageStatus,
    MessageType,
    NewEvent,
    NewMessage,
    Session,
    message_details,
)
from watui.stores.base import StoreProtocol
from watui.stores.group_commit import Statement
from watui.stores.postgres import PostgresStore
from watui.stores.sqlite import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OpenStore = Callable[[], Awaitable[StoreProtocol]]


def event(i: int, session: str = "ses_a", owner: str = "alice", kind: EventType = EventType.STATUS) -> NewEvent:
    return NewEvent(type=kind, session_id=session, owner=owner, payload={"i": i, "text": "é\n<b>"},
                    timestamp=T0 + timedelta(seconds=i))


def statement(store: StoreProtocol, sql: str, params: tuple[Any, ...]) -> Statement:
    """``sql`` written with ``?`` placeholders, in the store's dialect."""
    if store.dialect == "postgresql":
        numbers = iter(range(1, len(params) + 1))
        sql = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
    return sql, params


async def test_the_backend_is_the_one_asked_for(store: StoreProtocol, backend: str) -> None:
    assert isinstance(store, StoreProtocol)
    assert isinstance(store, {"sqlite": Store, "postgresql": PostgresStore}[backend])
    assert store.dialect == backend


async def test_writes_and_reads_round_trip(store: StoreProtocol) -> None:
    written = await store.append([event(i) for i in range(5)])
    ids = [e.id for e in written]
    assert ids == sorted(ids) and len(set(ids)) == 5
    read = await store.read_events()
    assert read == written
    assert read[0].payload == {"i": 0, "text": "é\n<b>"}
    assert read[0].timestamp == T0
    assert await store.recent_events("ses_a", limit=2) == written[-2:]
    assert await store.count_events() == 5
    assert await store.max_event_id() == ids[-1] == store.last_committed_id
    assert await store.oldest_event_id() == ids[0]


async def test_ids_grow_and_a_reader_resumes_after_any_id(store: StoreProtocol) -> None:
    written = []
    for n in (1, 3, 2, 1, 4):
        written += await store.append([event(len(written) + i) for i in range(n)])
    ids = [e.id for e in written]
    assert all(a < b for a, b in itertools.pairwise(ids))
    for k, after in enumerate([0, *ids]):
        assert await store.read_events(after_id=after) == written[k:]
    assert await store.read_events(after_id=ids[-1]) == []
    assert await store.read_events(after_id=ids[1], limit=2) == written[2:4]


async def test_reads_filter_by_owner_session_and_type(store: StoreProtocol) -> None:
    a = await store.append([event(1, "ses_a", "alice")])
    b = await store.append([event(2, "ses_b", "bob", EventType.QR)])
    c = await store.append([event(3, "ses_a", "alice", EventType.MESSAGE)])
    assert await store.read_events(owner="bob") == b
    assert await store.read_events(session_id="ses_a") == a + c
    assert await store.read_events(types=[EventType.QR, EventType.MESSAGE]) == b + c
    assert await store.read_events(owner="alice", types=[EventType.STATUS]) == a


async def test_ids_keep_growing_after_reopen(open_store: OpenStore) -> None:
    store = await open_store()
    first = await store.append([event(1), event(2)])
    await store.close()
    store = await open_store()
    assert store.last_committed_id == first[-1].id
    again = await store.append([event(3)])
    assert again[0].id > first[-1].id
    assert await store.read_events(after_id=first[0].id) == first[1:] + again


async def test_sessions_upsert_and_delete(store: StoreProtocol) -> None:
    one = Session(id="ses_1", owner="alice", name="one", created_at=T0, updated_at=T0)
    two = Session(id="ses_2", owner="bob", name="two", created_at=T0, updated_at=T0)
    await store.write(sessions=[one, two])
    assert [s.id for s in await store.load_sessions()] == ["ses_1", "ses_2"]
    renamed = one.model_copy(update={"name": "renamed"})
    await store.write(sessions=[renamed])
    loaded = await store.load_sessions()
    assert [s.name for s in loaded] == ["renamed", "two"]  # updated in place, order kept
    await store.write(deleted=["ses_1"])
    assert [s.id for s in await store.load_sessions()] == ["ses_2"]


def message(session: str, text: str, message_id: str | None, direction: MessageDirection = MessageDirection.OUT,
            status: MessageStatus = MessageStatus.SENT) -> NewMessage:
    return NewMessage(session_id=session, direction=direction, chat="491701234567@s.whatsapp.net", text=text,
                      message_id=message_id, status=status, timestamp=T0)


async def test_messages_list_find_and_move_status_forward_only(store: StoreProtocol) -> None:
    result = await store.write(messages=[message("ses_a", "hi", "W1"), message("ses_a", "there", "W2")],
                               events=[event(1, kind=EventType.MESSAGE)])
    assert [m.text for m in result.messages] == ["hi", "there"]
    assert result.messages[0].id < result.messages[1].id
    await store.write(messages=[message("ses_b", "elsewhere", "W1")])
    page, total = await store.list_messages("ses_a")
    assert total == 2 and [m.text for m in page] == ["there", "hi"]  # newest first
    page, total = await store.list_messages("ses_a", limit=1, offset=1)
    assert total == 2 and [m.text for m in page] == ["hi"]
    found = await store.find_message("ses_a", "W1")
    assert found is not None and found.text == "hi" and found.timestamp == T0
    assert await store.find_message("ses_a", "nope") is None

    receipt = await store.update_message_status(
        "ses_a", "W1", MessageStatus.READ, events=[event(2, kind=EventType.MESSAGE_STATUS)])
    assert [e.type for e in receipt.events] == [EventType.MESSAGE_STATUS]
    await store.update_message_status("ses_a", "W1", MessageStatus.DELIVERED)  # late: ignored
    found = await store.find_message("ses_a", "W1")
    assert found is not None and found.status is MessageStatus.READ
    other = await store.find_message("ses_b", "W1")
    assert other is not None and other.status is MessageStatus.SENT


async def test_deleting_a_session_takes_its_messages_and_their_events(store: StoreProtocol) -> None:
    session = Session(id="ses_a", owner="alice", name="a", created_at=T0, updated_at=T0)
    kept = await store.write(sessions=[session], events=[event(1)],
                             messages=[message("ses_a", "secret", "W1")])
    await store.append([event(2, kind=EventType.MESSAGE)])
    await store.write(deleted=["ses_a"])
    assert await store.list_messages("ses_a") == ([], 0)
    assert await store.read_events(session_id="ses_a") == kept.events


async def test_api_keys_create_find_list_and_revoke(store: StoreProtocol) -> None:
    with pytest.raises(ValueError):
        await store.create_api_key("  ")
    admin, admin_secret = await store.create_api_key("root", admin=True)
    key, secret = await store.create_api_key("alice")
    assert admin.role == "admin" and key.role == "user" and secret.startswith(key.prefix)
    found = await store.find_api_key(secret)
    assert found is not None and found.id == key.id and found.owner == "alice"
    assert found.created_at == key.created_at
    assert await store.find_api_key(secret + "x") is None
    assert [k.id for k in await store.list_api_keys()] == [admin.id, key.id]
    assert await store.count_api_keys() == 2
    assert await store.revoke_api_key(key.id) is True
    assert await store.revoke_api_key(key.id) is False
    assert await store.revoke_api_key("key_missing") is False
    assert await store.find_api_key(secret) is None
    assert await store.find_api_key(admin_secret) is not None
    listed = {k.id: k for k in await store.list_api_keys()}
    assert listed[key.id].revoked_at is not None and listed[admin.id].revoked_at is None
    assert await store.count_api_keys() == 1


async def test_hooks_commit_with_their_event_and_observers_see_commit_order(store: StoreProtocol) -> None:
    seen: list[int] = []
    store.on_commit.append(lambda events: seen.extend(e.id for e in events))
    store.event_hooks.append(lambda e: [statement(
        store, "INSERT INTO sessions(id, owner, doc) VALUES (?, ?, ?)", (f"hook_{e.id}", "x", "{}"))])
    written = await asyncio.gather(*(store.append([event(i)]) for i in range(6)))
    ids = sorted(e.id for batch in written for e in batch)
    assert seen == ids
    rows = await store.fetchall("SELECT id FROM sessions WHERE owner = 'x'")
    assert sorted(r[0] for r in rows) == sorted(f"hook_{i}" for i in ids)


async def test_a_bad_write_fails_alone_and_leaves_nothing(store: StoreProtocol) -> None:
    bad = store.write(events=[event(1)], statements=[("INSERT INTO no_such_table VALUES (1)", ())])
    good = store.append([event(2)])
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(results[0], Exception)
    assert not isinstance(results[1], BaseException)
    assert await store.read_events() == results[1]


async def test_concurrent_writers_and_resuming_readers_see_every_event_once_in_order(
    open_store: OpenStore,
) -> None:
    """Three nodes (three pools on PostgreSQL) write at once, in batches of random sizes, while
    readers tail the log in pages of random sizes and keep resuming at random ids they have
    seen: each reader must end with every event exactly once, in id order, and every resume
    must give exactly the tail it had."""
    rng = random.Random(9)
    writers = [await open_store() for _ in range(3)]
    readers = [await open_store() for _ in range(3)]
    done = asyncio.Event()
    written: list[int] = []

    async def write(store: StoreProtocol, node: int, task: int) -> None:
        for batch in range(20):
            size = rng.randint(1, 4)
            events = await store.append([
                NewEvent(type=EventType.STATUS, session_id=f"ses_{node}_{task}", owner="alice",
                         payload={"batch": batch, "k": k})
                for k in range(size)])
            written.extend(e.id for e in events)
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    async def read(store: StoreProtocol) -> list[int]:
        got: list[int] = []
        while True:
            finished = done.is_set()  # read once more after the writers stop, then end
            page = await store.read_events(after_id=got[-1] if got else 0, limit=rng.randint(1, 40))
            got.extend(e.id for e in page)
            if got:  # a client reconnects with Last-Event-ID = some id it has seen
                k = rng.randrange(max(0, len(got) - 50), len(got))  # near the head, where gaps would be
                tail = await store.read_events(after_id=got[k], limit=len(got) - k)
                assert [e.id for e in tail][: len(got) - k - 1] == got[k + 1:]
            if not page:
                if finished:
                    return got
                await asyncio.sleep(0.001)

    reading = [asyncio.create_task(read(store)) for store in readers]
    await asyncio.gather(*(write(store, n, t) for n, store in enumerate(writers) for t in range(3)))
    done.set()
    seen = await asyncio.gather(*reading)
    assert len(written) == len(set(written))
    for got in seen:
        assert got == sorted(written)  # every event, once, in order


async def test_messages_of_every_type_keep_their_parts_and_count_by_type(store: StoreProtocol) -> None:
    media = MediaInfo(id="med_1", mimetype="image/jpeg", size=2048, sha256="ab" * 32, filename="p.jpg")
    parts = [
        ("text", "plain", None),
        ("image", "a caption", message_details(media, None, None)),
        ("voice", "", message_details(MediaInfo(mimetype="audio/ogg; codecs=opus", size=9, sha256=""), None, None)),
        ("location", "", message_details(None, LocationInfo(latitude=52.5, longitude=13.4, name="B"), None)),
        ("contact", "", message_details(None, None, ContactInfo(name="Ana", phone="491511234567"))),
        ("image", "", None),  # a message kept without history: its type only
    ]
    written = await store.write(messages=[
        NewMessage("ses_t", MessageDirection.IN, "14155550100", text, f"T{n}", MessageStatus.RECEIVED,
                   timestamp=T0, type=MessageType(kind), details=details)
        for n, (kind, text, details) in enumerate(parts)
    ])
    page, _ = await store.list_messages("ses_t")
    assert list(reversed(page)) == written.messages
    text, image, voice, location, contact, bare = written.messages
    assert (text.type, text.text, text.caption, text.media) == (MessageType.TEXT, "plain", None, None)
    assert (image.type, image.text, image.caption, image.media) == (MessageType.IMAGE, "", "a caption", media)
    assert voice.media is not None and voice.media.id is None and voice.caption is None
    assert location.location == LocationInfo(latitude=52.5, longitude=13.4, name="B")
    assert contact.contact == ContactInfo(name="Ana", phone="491511234567")
    assert (bare.type, bare.media, bare.caption) == (MessageType.IMAGE, None, None)
    assert await store.find_message("ses_t", "T1") == image
    assert await store.get_message("ses_t", image.id) == image
    assert await store.get_message("ses_other", image.id) is None
    stats = await store.message_stats(["ses_t"], today=T0.date(), days=1)
    assert stats.by_type == {"text": 1, "image": 2, "voice": 1, "location": 1, "contact": 1}
    assert (await store.message_stats(None, today=T0.date(), days=1)).by_type == stats.by_type


async def test_media_storage_keeps_serves_ranges_and_prunes(store: StoreProtocol, tmp_path: Path) -> None:
    storage = media_storage(store, tmp_path)
    files = {}
    for n, size in enumerate((10, 3 * 1024 * 1024 + 17, 5000)):
        data = os.urandom(size)
        source = staging_dir(tmp_path) / f"in_{n}"
        source.write_bytes(data)
        media_id = f"med_{n}"
        assert await storage.put("ses_m" if n < 2 else "ses_n", media_id, source) == size
        assert not source.exists()  # taken over
        files[media_id] = data
    big = files["med_1"]
    assert await storage.size("ses_m", "med_1") == len(big)
    assert await storage.size("ses_n", "med_1") is None  # another session's id
    whole = b"".join([p async for p in storage.read("ses_m", "med_1", 0, len(big) - 1)])
    assert whole == big
    for start, end in ((0, 0), (1024 * 1024 - 3, 1024 * 1024 + 3), (2 * 1024 * 1024, len(big) - 1), (5, 9)):
        got = b"".join([p async for p in storage.read("ses_m", "med_1", start, end)])
        assert got == big[start:end + 1], (start, end)
    # The size cap deletes the oldest first: what is left fits.
    assert await storage.prune(before=T0, max_total_bytes=len(big) + 5000) == (1, 10)
    assert await storage.size("ses_m", "med_0") is None and await storage.size("ses_m", "med_1") == len(big)
    await storage.delete_session("ses_m")
    assert await storage.size("ses_m", "med_1") is None
    assert await storage.size("ses_n", "med_2") == 5000
    assert await storage.prune(before=datetime.now(UTC) + timedelta(seconds=5), max_total_bytes=None) == (1, 5000)
    assert await storage.size("ses_n", "med_2") is None


async def test_pending_sends_are_found_and_settle_once(store: StoreProtocol) -> None:
    """Pacing's rows: queued sends are ``pending`` until settled, once, with the time they went;
    without ``keep_body`` (history off) the text and details go; statistics count them apart."""
    session = Session(id="ses_p", owner="alice", name="p", created_at=T0, updated_at=T0)
    details = message_details(MediaInfo(id="med_1", mimetype="image/jpeg", size=3, sha256="ab"), None, None)
    queued = await store.write(sessions=[session], messages=[
        NewMessage("ses_p", MessageDirection.OUT, "1555", "first", None, MessageStatus.PENDING, timestamp=T0),
        NewMessage("ses_p", MessageDirection.OUT, "1555", "a caption", None, MessageStatus.PENDING,
                   timestamp=T0, type=MessageType.IMAGE, details=details),
        NewMessage("ses_q", MessageDirection.OUT, "1555", "other", None, MessageStatus.PENDING, timestamp=T0),
    ])
    await store.write(messages=[message("ses_p", "done already", "W0")])
    first, second, other = queued.messages
    assert sorted(await store.pending_sessions()) == ["ses_p", "ses_q"]
    assert [m.id for m in await store.pending_messages("ses_p")] == [first.id, second.id]
    stats = await store.message_stats(["ses_p"], today=T0.date(), days=1)
    assert (stats.total, stats.sent, stats.pending) == (3, 1, 2)
    assert stats.by_day[T0.date().isoformat()].sent == 1  # pending is not sent yet

    went = T0 + timedelta(days=1, seconds=5)
    bumped = session.model_copy(update={"messages_sent": 1})
    result = await store.settle_message(
        "ses_p", first.id, status=MessageStatus.SENT, message_id="W1", error=None, timestamp=went,
        keep_body=True, events=[event(1, session="ses_p", kind=EventType.MESSAGE_STATUS)], sessions=[bumped])
    assert [e.type for e in result.events] == [EventType.MESSAGE_STATUS]
    # Settling again changes nothing: the row left pending once.
    await store.settle_message("ses_p", first.id, status=MessageStatus.FAILED, message_id=None, error="late",
                               timestamp=went, keep_body=False)
    sent = await store.find_message("ses_p", "W1")
    assert sent is not None and sent.id == first.id and sent.status is MessageStatus.SENT
    assert sent.text == "first" and sent.timestamp == went and sent.error is None
    assert [s.messages_sent for s in await store.load_sessions() if s.id == "ses_p"] == [1]

    await store.settle_message("ses_p", second.id, status=MessageStatus.FAILED, message_id=None,
                               error="engine said no", timestamp=went, keep_body=False)
    failed = await store.get_message("ses_p", second.id)
    assert failed is not None and failed.status is MessageStatus.FAILED and failed.error == "engine said no"
    assert failed.type is MessageType.IMAGE and failed.caption is None and failed.media is None
    assert await store.pending_messages("ses_p") == []
    assert await store.pending_sessions() == ["ses_q"]
    assert [m.id for m in await store.pending_messages("ses_q")] == [other.id]


async def test_media_storage_deletes_one_file(store: StoreProtocol, tmp_path: Path) -> None:
    storage = media_storage(store, tmp_path)
    for n in range(2):
        source = staging_dir(tmp_path) / f"in_{n}"
        source.write_bytes(b"x" * (n + 1))
        await storage.put("ses_d", f"med_{n}", source)
    await storage.delete("ses_e", "med_0")  # another session's: nothing happens
    assert await storage.size("ses_d", "med_0") == 1
    await storage.delete("ses_d", "med_0")
    await storage.delete("ses_d", "med_0")  # gone already: nothing happens
    assert await storage.size("ses_d", "med_0") is None and await storage.size("ses_d", "med_1") == 2
