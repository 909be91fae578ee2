from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ReplayQueued(BaseModel):
    event_id: str
    status: Literal["pending"]
