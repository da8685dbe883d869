"""Media messages through the simulated engine (issue 21): messages a second sent and
received at 100 KB and 5 MB, and what a stored megabyte costs on disk.

    .venv/bin/python -m bench.bench_media [--small 200] [--large 20]

1. Through the manager's public service on the simulated engine (inline, SQLite, real clock),
   one linked session:
   - send: ``send`` of an image as base64 ``media.data``: decode, size cap, sniff, hash, the
     engine's send (it reads and hashes the file, as an upload would), keep the file, write
     the message and its event;
   - receive: ``simulate`` of the phone sending an image (base64): the engine "downloads" it
     (a copy into the session's media directory), the manager moves it into the store and
     writes the message.
   ``--small`` messages of 100 KB and ``--large`` of 5 MB each way, one at a time (a send
   answers once stored). The figures include base64 decoding, the part a JSON client pays
   for; a multipart send skips it.
2. Storage cost per stored MB: bytes on disk for the bytes kept, for the SQLite mode's files
   (``du`` of the media directory: file system blocks) and for PostgreSQL's ``media_chunks``
   (``pg_total_relation_size`` of both media tables, after the same files went in through
   ``PgMediaStorage``; ``WATUI_BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from bench._util import Figure, print_table, wait_until
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import Status
from watui.manager.session_manager import SessionManager
from watui.media.storage import PgMediaStorage, staging_dir
from watui.models import Caller, SendMessage, SessionCreate, SimulateRequest
from watui.stores.postgres import PostgresStore

SERVER = os.environ.get("WATUI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SMALL, LARGE = 100 * 1000, 5 * 1000 * 1000


def jpeg(size: int) -> bytes:
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return head + os.urandom(size - len(head) - 2) + b"\xff\xd9"


async def through_the_manager(data_dir: Path, small: int, large: int) -> tuple[list[Figure], int]:
    engine = SimulatedEngine(connect_latency=0.0, link_latency=0.0, receipt_delay=None, seed="bench")
    settings = Settings(data_dir=data_dir, engine="simulated", sqlite_synchronous="NORMAL",
                        overload_lag_ms=0)  # type: ignore[call-arg]
    manager = await SessionManager.open(settings, engine=engine)
    admin = manager.service(Caller.local_admin())
    figures: list[Figure] = []
    try:
        session = await admin.create_session(SessionCreate(name="media"))
        await wait_until(lambda: manager.registry.sessions[session.id].status is Status.QR_READY, timeout=10)
        await admin.simulate(session.id, SimulateRequest(action="scan"))
        await wait_until(lambda: manager.registry.sessions[session.id].status is Status.CONNECTED, timeout=10)
        for label, size, count in (("100 KB", SMALL, small), ("5 MB", LARGE, large)):
            data = base64.b64encode(jpeg(size)).decode()
            send = SendMessage.model_validate(
                {"to": "+14155550123", "type": "image", "caption": "bench", "media": {"data": data}})
            started = time.perf_counter()
            for _ in range(count):
                await admin.send(session.id, send)
            took = time.perf_counter() - started
            figures.append(Figure(f"send, {label} images", count / took, "msg/s",
                                  note=f"{count * size / took / 1e6:.0f} MB/s, {count} sent"))
            receive = SimulateRequest.model_validate(
                {"action": "message", "chat": "+14155550123", "type": "image", "media": {"data": data}})
            started = time.perf_counter()
            for _ in range(count):
                await admin.simulate(session.id, receive)
            took = time.perf_counter() - started
            figures.append(Figure(f"receive, {label} images", count / took, "msg/s",
                                  note=f"{count * size / took / 1e6:.0f} MB/s, {count} received"))
        stored = 2 * (small * SMALL + large * LARGE)
        page = await admin.list_messages(session.id, limit=1)
        assert page.total == 2 * (small + large) and page.messages[0].media is not None
    finally:
        await manager.aclose()
    return figures, stored


def disk_bytes(path: Path) -> int:
    """What ``path`` takes on disk: its file system blocks (``du``), or its bytes if more."""
    apparent = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    blocks = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return max(int(apparent.stdout.split()[0]), int(blocks.stdout.split()[0]) * 1024)


async def postgres_cost(data_dir: Path, small: int, large: int) -> tuple[int, int, float, float]:
    schema = "bench_media_" + secrets.token_hex(4)
    store = await PostgresStore.open(SERVER, schema=schema)
    try:
        storage = PgMediaStorage(store)
        stored = 0
        write = read = 0.0
        for size, count in ((SMALL, small), (LARGE, large)):
            data = jpeg(size)
            for n in range(count):
                source = staging_dir(data_dir) / f"pg_{size}_{n}"
                source.write_bytes(data)
                started = time.perf_counter()
                await storage.put("ses_bench", f"med_{size}_{n}", source)
                write += time.perf_counter() - started
                stored += size
            started = time.perf_counter()
            got = b"".join([p async for p in storage.read("ses_bench", f"med_{size}_0", 0, size - 1)])
            read += (time.perf_counter() - started) / size
            assert got == data
        rows = await store.fetchall(
            "SELECT pg_total_relation_size('media') + pg_total_relation_size('media_chunks')")
        return stored, int(rows[0][0]), stored / write / 1e6, 1 / read / 1e6
    finally:
        await store.close()
        conn = await asyncpg.connect(SERVER)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=200, help="100 KB messages each way")
    parser.add_argument("--large", type=int, default=20, help="5 MB messages each way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="watui-bench-media-") as tmp:
        figures, stored = asyncio.run(through_the_manager(Path(tmp) / "data", args.small, args.large))
        on_disk = disk_bytes(Path(tmp) / "data" / "media" / "files")
        figures.append(Figure("SQLite mode: disk per stored MB", on_disk / stored, "MB/MB", digits=3,
                              note=f"{stored / 1e6:.0f} MB kept as files"))
        try:
            pg_stored, pg_bytes, write_mbs, read_mbs = asyncio.run(
                postgres_cost(Path(tmp) / "pg", args.small, args.large))
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"PostgreSQL is not reachable at {SERVER} ({exc}); set WATUI_BENCH_PG. Skipped it.")
        else:
            figures.append(Figure("PostgreSQL: disk per stored MB", pg_bytes / pg_stored, "MB/MB", digits=3,
                                  note=f"{pg_stored / 1e6:.0f} MB in media_chunks; put {write_mbs:.0f} MB/s, "
                                       f"read {read_mbs:.0f} MB/s"))
    print_table("Media messages through the simulated engine, and what storing them costs", figures)


if __name__ == "__main__":
    main()
