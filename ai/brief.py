"""What a CallActor needs to know about its task to hold the conversation (no database types)."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from db.shapes import CollectedInfo

__all__ = ["CallBrief"]


class CallBrief(BaseModel):
    """The task as the voice AI sees it: goal, facts it may use, and who it speaks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: uuid.UUID
    objective: str = Field(min_length=1)
    context: str = ""
    callee_name: str | None = None
    language: str = Field(default="en", min_length=2, max_length=35)
    voice: str | None = None
    collected_info: list[CollectedInfo] = []
    is_callback: bool = False
    voicemail_message: str | None = None
    on_behalf_of: str = Field(min_length=1)
    """Who the AI discloses it acts for (the task creator's name or organisation)."""
    timezone: str = "UTC"
    """The callee's IANA time zone, for parsing requested callback times."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value
