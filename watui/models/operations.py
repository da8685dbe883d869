"""What the server reports about itself: engine hosts and start-up restore."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class EngineHost(BaseModel):
    """One engine host process (``GET /v1/engine/hosts``, the console's hosts view)."""

    id: str
    pid: int | None
    sessions: list[str]
    started_at: datetime
    connects: int = Field(..., description="connect attempts made by this host")
    restarts: int = Field(
        ..., description="host processes that ran in its slot before this one, whatever ended them "
                         "(a crash, recycling, an idle stop)")
    crashes: int = Field(0, description="of those, the ones that ended unasked (crashed)")


class RestoreProgress(BaseModel):
    """Start-up restore of running sessions: ``done`` of ``total`` connects made."""

    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total
