"""What a CallActor is given: which call to place, for whom, and what to talk about."""

from __future__ import annotations

import re
import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from actors.options import task_actor_name
from ai.brief import CallBrief
from db.shapes import utcnow

__all__ = ["CallSpec"]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class CallSpec(BaseModel):
    """One call attempt, as the owner (a TaskActor) hands it to a new CallActor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: uuid.UUID
    """Made by the owner; also the AudioSocket UUID, the AMI ChannelId and the Call row's key."""
    task_id: uuid.UUID
    number: str
    """The callee in E.164 (``+14155550100``)."""
    owner_name: str = Field(min_length=1)
    """The actor the call reports to (``task:<task id>``)."""
    namespace: str = Field(min_length=1)
    """The Ray namespace of the owner, the PbxGateway and this call."""
    brief: CallBrief
    asked_at: AwareDatetime = Field(default_factory=utcnow)
    """When the owner asked for the call (setup-time figures start here)."""

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not _E164.match(value):
            raise ValueError("number must be E.164 like +14155550100")
        return value

    @classmethod
    def for_task(
        cls, *, call_id: uuid.UUID, number: str, namespace: str, brief: CallBrief
    ) -> CallSpec:
        """A spec reporting to the task's own actor (``task:<brief.task_id>``)."""
        return cls(
            call_id=call_id,
            task_id=brief.task_id,
            number=number,
            owner_name=task_actor_name(brief.task_id),
            namespace=namespace,
            brief=brief,
        )
