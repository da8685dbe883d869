"""The PostgreSQL store's API keys: making one (its secret is shown once, only its hash is
kept), finding one by its secret, listing, revoking and counting them.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from watui.models import ApiKey, utcnow
from watui.stores.base import hash_key
from watui.stores.postgres_writer import PostgresWriter


class PostgresApiKeys(PostgresWriter):
    """The ``api_keys`` table; keys are written through the writer like any other write."""

    async def create_api_key(self, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """Make a key; the secret is returned once and only its hash is stored."""
        owner = owner.strip()
        if not owner:
            raise ValueError("owner must not be blank")
        secret = "wat_" + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(6), owner=owner, role="admin" if admin else "user",
                     prefix=secret[:10], created_at=utcnow())
        await self.write(statements=[(
            "INSERT INTO api_keys(id, owner, role, key_hash, prefix, created_at) VALUES ($1,$2,$3,$4,$5,$6)",
            (key.id, key.owner, key.role, hash_key(secret), key.prefix, key.created_at),
        )])
        return key, secret

    async def find_api_key(self, secret: str) -> ApiKey | None:
        rows = await self.fetchall(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys"
            " WHERE key_hash = $1 AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return self._key(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.fetchall(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [self._key(row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        if not await self.fetchall("SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL", (key_id,)):
            return False
        await self.write(statements=[(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", (utcnow(), key_id),
        )])
        return True

    async def count_api_keys(self) -> int:
        return int(await self._pool.fetchval("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"))

    @staticmethod
    def _key(row: Any) -> ApiKey:
        revoked: datetime | None = row[5]
        return ApiKey(id=row[0], owner=row[1], role=row[2], prefix=row[3], created_at=row[4],
                      revoked_at=revoked)
