"""How a TaskActor places, finds and checks its call's CallActor (no database here).

Ray calls that block the caller (creating a named actor registers its name with the GCS;
``ray.get_actor``, ``ray.kill`` and the resource views are GCS round trips) run in a worker
thread, so the TaskActor's event loop keeps serving ``report`` and ``resolve_hitl_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final

import ray
from ray.exceptions import RayActorError, RayError

from actors.call import CallActorRemote
from actors.call_spec import CallSpec
from actors.options import CALL_SLOT, call_actor_name, call_actor_options
from ai.brief import CallBrief
from db.repo.snapshots import TaskSnapshot
from db.states import CallOutcome
from opendeep.settings import Settings

__all__ = [
    "PLACEMENT_TIMEOUT",
    "CallNotPlacedError",
    "build_brief",
    "call_alive",
    "find_call",
    "free_call_slots",
    "kill_actor",
    "place_call",
]

log = logging.getLogger(__name__)

PLACEMENT_TIMEOUT: Final = 30.0
"""s for a new CallActor to be placed and answer; a worker starts in ~1-2 s here (DESIGN §9),
so only a cluster without a free ``call_slot`` gets near this."""
STATUS_TIMEOUT: Final = 5.0
"""s for a live CallActor to answer ``status()``; a slower answer means busy, not gone."""
_CALLBACK_OUTCOMES: Final = frozenset(
    {CallOutcome.NEEDS_USER_INFO, CallOutcome.RESCHEDULE_REQUESTED}
)


class CallNotPlacedError(RuntimeError):
    """The CallActor could not be placed (no free call slot) or did not come up."""


def build_brief(snap: TaskSnapshot, *, on_behalf_of: str) -> CallBrief:
    """What the voice AI is told about the task for its next call."""
    last = snap.last_call
    callback = bool(snap.collected_info) or (
        last is not None and last.outcome in _CALLBACK_OUTCOMES
    )
    return CallBrief(
        task_id=snap.id,
        objective=snap.objective,
        context=snap.context,
        callee_name=snap.callee_name,
        language=snap.language,
        voice=snap.voice,
        collected_info=list(snap.collected_info),
        is_callback=callback,
        voicemail_message=snap.voicemail_message,
        on_behalf_of=on_behalf_of,
        timezone=snap.window.zones[0],
    )


async def free_call_slots() -> float:
    """``call_slot`` units free in the cluster right now (0 when no node declares any)."""
    available = await asyncio.to_thread(ray.available_resources)
    return float(available.get(CALL_SLOT, 0.0))


async def place_call(spec: CallSpec, settings: Settings) -> Any:
    """Create the CallActor of ``spec`` and wait until it is placed and answering.

    Raises :class:`CallNotPlacedError` (leaving no actor behind) when no node had a free call
    slot within :data:`PLACEMENT_TIMEOUT`, or when the actor died coming up. The call is not
    started: the caller records the call first, then starts it.
    """
    options = call_actor_options(spec.call_id, spec.namespace)

    def create() -> Any:
        return CallActorRemote.options(**options).remote(spec, settings)

    handle = await asyncio.to_thread(create)
    try:
        await asyncio.wait_for(handle.status.remote(), PLACEMENT_TIMEOUT)
    except TimeoutError:
        await kill_actor(handle)
        raise CallNotPlacedError("No free call slot") from None
    except RayError as exc:
        log.error("call %s: CallActor did not come up: %s", spec.call_id, exc)
        await kill_actor(handle)
        raise CallNotPlacedError(f"The call could not start ({type(exc).__name__})") from exc
    return handle


async def find_call(call_id: uuid.UUID, namespace: str) -> Any | None:
    """The handle of ``call:<id>``, or ``None`` when no such actor lives."""
    try:
        return await asyncio.to_thread(ray.get_actor, call_actor_name(call_id), namespace=namespace)
    except ValueError:
        return None


async def call_alive(handle: Any) -> bool | None:
    """``True`` if the CallActor answers, ``False`` if it is dead, ``None`` if it is too busy."""
    try:
        await asyncio.wait_for(handle.status.remote(), STATUS_TIMEOUT)
    except RayActorError:
        return False
    except (TimeoutError, RayError):
        return None
    return True


async def kill_actor(handle: Any) -> None:
    """Kill an actor (no restart); an actor already gone is fine."""
    try:
        await asyncio.to_thread(ray.kill, handle)
    except (ValueError, RayError) as exc:
        log.debug("kill: %s", exc)
