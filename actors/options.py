"""Ray options of every OpenDeep actor, in one place, each with the reason it is what it is.

Names are how actors find each other inside one Ray namespace (DESIGN.md §2); ownership is a
lease in the database, never a name. Callers pass these dicts to ``ActorClass.options(**...)``.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

__all__ = [
    "CALL_SLOT",
    "PBX_NAME",
    "SUPERVISOR_NAME",
    "call_actor_name",
    "call_actor_options",
    "pbx_gateway_options",
    "supervisor_options",
    "task_actor_name",
    "task_actor_options",
]

CALL_SLOT: Final = "call_slot"
"""Custom resource: each node declares how many calls it may hold at once (``call_slots``)."""

PBX_NAME: Final = "pbx"
SUPERVISOR_NAME: Final = "supervisor"


def call_actor_name(call_id: uuid.UUID | str) -> str:
    """``call:<uuid>``: the name a CallActor registers and the PbxGateway routes events to."""
    return f"call:{call_id}"


def task_actor_name(task_id: uuid.UUID | str) -> str:
    """``task:<uuid>``: the CallActor's owner, found by name on every delivery retry."""
    return f"task:{task_id}"


def call_actor_options(call_id: uuid.UUID | str, namespace: str) -> dict[str, Any]:
    """Options of the CallActor of ``call_id``."""
    return {
        # The PbxGateway and the owner find the call by this name (AMI events, HITL answers).
        "name": call_actor_name(call_id),
        "namespace": namespace,
        # Detached: a restarting TaskActor must not take a live phone call down with it.
        "lifetime": "detached",
        # A constructor re-run cannot resume a TCP call or a Realtime session: die, get reconciled.
        "max_restarts": 0,
        # The call is I/O bound and must not queue behind CPU-reserving work for a slot...
        "num_cpus": 0,
        # ...instead each node's declared call slots cap its concurrent calls.
        "resources": {CALL_SLOT: 1},
        # Async actor: PBX events, HITL answers, status() and cancel() run while the call runs;
        # a handful at a time is plenty and keeps a runaway caller from piling up coroutines.
        "max_concurrency": 64,
    }


def pbx_gateway_options(namespace: str) -> dict[str, Any]:
    """Options of the one PbxGateway (owner of the AMI connection)."""
    return {
        # One AMI connection per cluster; every CallActor asks it by this name.
        "name": PBX_NAME,
        "namespace": namespace,
        # Whoever starts it first (supervisor, `opendeep up`, a test) wins; the rest reuse it.
        "get_if_exists": True,
        # Detached: it outlives the driver that created it, like the calls it serves.
        "lifetime": "detached",
        # Its state is only the AMI connection, rebuilt in __init__: restarting is always right.
        # Originates in flight at a crash are never re-sent (their calls see OriginateUnknown-like
        # silence and settle by the AudioSocket connection or their timeouts).
        "max_restarts": -1,
        # max_task_retries stays 0 (at most once): a retried originate() would dial twice.
        # Reserves no CPU: it forwards small AMI messages and must never wait for a free core.
        "num_cpus": 0,
        # Every CallActor awaits originate()/hangup() here concurrently.
        "max_concurrency": 1000,
    }


def task_actor_options(task_id: uuid.UUID | str, namespace: str) -> dict[str, Any]:
    """Options of the TaskActor of ``task_id`` (built in issue 5; DESIGN.md §2)."""
    return {
        # The CallActor reports to this name and re-resolves it on every delivery retry.
        "name": task_actor_name(task_id),
        "namespace": namespace,
        # Detached: a supervisor restart must not kill the task it handed out.
        "lifetime": "detached",
        # Its state is reloaded from the database in __init__, so a restart resumes the task.
        "max_restarts": -1,
        # I/O bound (database, actor calls); analysis is awaited off the loop.
        "num_cpus": 0,
    }


def supervisor_options(namespace: str) -> dict[str, Any]:
    """Options of the Supervisor (issue 5; DESIGN.md §2)."""
    return {
        # The front nudges it by name (`wake()`); one per namespace.
        "name": SUPERVISOR_NAME,
        "namespace": namespace,
        "get_if_exists": True,
        # Detached and always restarted: its state lives in the database, rebuilt in __init__.
        "lifetime": "detached",
        "max_restarts": -1,
        "num_cpus": 0,
    }
