"""The SQLite store's API keys: making one (only its hash is stored), finding one by its secret,
listing, revoking and counting them.
"""

from __future__ import annotations

import secrets
from typing import Any

from watui.models import ApiKey, utcnow
from watui.stores.base import hash_key
from watui.stores.encoding import utc_text
from watui.stores.group_commit import GroupCommitWriter
from watui.stores.sqlite_reads import SqliteReads, parse_ts


class SqliteApiKeys(SqliteReads, GroupCommitWriter):
    """API keys, read on the reader connection and written through the write queue."""

    async def create_api_key(self, owner: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """Make a key; the secret is returned once and only its hash is stored."""
        owner = owner.strip()
        if not owner:
            raise ValueError("owner must not be blank")
        secret = "wat_" + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            owner=owner,
            role="admin" if admin else "user",
            prefix=secret[:10],
            created_at=utcnow(),
        )
        await self.write(statements=[(
            "INSERT INTO api_keys(id, owner, role, key_hash, prefix, created_at) VALUES (?,?,?,?,?,?)",
            (key.id, key.owner, key.role, hash_key(secret), key.prefix, utc_text(key.created_at)),
        )])
        return key, secret

    async def find_api_key(self, secret: str) -> ApiKey | None:
        rows = await self._fetch(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys"
            " WHERE key_hash = ? AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return self._key(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._fetch(
            "SELECT id, owner, role, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [self._key(row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)
        )
        if not rows:
            return False
        await self.write(statements=[(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (utc_text(utcnow()), key_id),
        )])
        return True

    async def count_api_keys(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
        return int(rows[0][0])

    @staticmethod
    def _key(row: Any) -> ApiKey:
        return ApiKey(
            id=row[0], owner=row[1], role=row[2], prefix=row[3], created_at=parse_ts(row[4]),
            revoked_at=parse_ts(row[5]) if row[5] else None,
        )
