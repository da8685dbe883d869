"""``watui keys create|list|revoke`` on a cluster's keys in PostgreSQL (``--database-url`` or
``WATUI_DATABASE_URL``), run as the user runs them: a subprocess, against a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from watui.stores.postgres import PostgresStore


def watui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watui", "keys", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


async def test_keys_create_list_revoke_work_on_the_clusters_database(
    fresh_pg_database: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    created = watui("create", "--owner", "bob", "--admin", "--data-dir", str(data),
                    env={"WATUI_DATABASE_URL": fresh_pg_database})
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("wat_")
    assert not (data / "watui.db").exists()  # the cluster's keys, not the data dir's

    store = await PostgresStore.open(fresh_pg_database)
    try:
        key = await store.find_api_key(secret)
        assert key is not None and key.owner == "bob" and key.role == "admin"

        listed = watui("list", "--database-url", fresh_pg_database)
        assert listed.returncode == 0, listed.stderr
        assert key.id in listed.stdout and "bob" in listed.stdout and secret not in listed.stdout

        revoked = watui("revoke", key.id, "--database-url", fresh_pg_database)
        assert revoked.returncode == 0, revoked.stderr
        assert await store.find_api_key(secret) is None
        again = watui("revoke", key.id, "--database-url", fresh_pg_database)
        assert again.returncode == 1 and "No active key" in again.stderr
    finally:
        await store.close()


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    result = watui("list", "--database-url", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "cannot open the database postgresql://nobody:***@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr
