"""Who is asking: the caller, and an API key as listed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Caller(BaseModel):
    """Who is asking: an owner, and whether it may see every owner's sessions."""

    model_config = ConfigDict(frozen=True)

    owner: str
    admin: bool = False

    @classmethod
    def local_admin(cls) -> Caller:
        return cls(owner="local", admin=True)


class ApiKey(BaseModel):
    id: str
    owner: str
    role: Literal["admin", "user"]
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
