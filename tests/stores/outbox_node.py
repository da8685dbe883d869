"""A webhook node on its own, for the cluster tests to ``kill -9``: a dispatcher over a
PostgreSQL outbox, nothing else.

    python outbox_node.py DSN SCHEMA NODE_ID DATA_DIR TIMEOUT CLAIM_MARGIN

It prints ``ready`` once its dispatcher runs, then sends until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from watui.clock import RealClock
from watui.config import Settings
from watui.stores.postgres import PostgresStore
from watui.webhooks import WebhookDispatcher, WebhookOptions


async def main(dsn: str, schema: str, node_id: str, data_dir: str, timeout: float, margin: float) -> None:
    store = await PostgresStore.open(dsn, schema=schema)
    settings = Settings(data_dir=Path(data_dir), engine="simulated", webhook_allow_private=True, node_id=node_id)
    options = WebhookOptions(poll_interval=0.05, cluster_poll_interval=0.05, timeout=timeout, claim_margin=margin)
    dispatcher = WebhookDispatcher(store, settings, sessions={}, clock=RealClock(), options=options)
    dispatcher.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    dsn, schema, node_id, data_dir, timeout, margin = sys.argv[1:7]
    asyncio.run(main(dsn, schema, node_id, data_dir, float(timeout), float(margin)))
