"""The long-lived actors of one namespace: start them, and drain them on shutdown.

`opendeep up` and the Serve deployment (``serve deploy`` on an existing cluster) both make sure
the PbxGateway and the Supervisor run; both are detached, named and ``get_if_exists``, so
whoever comes first creates them and the others reuse them. Draining (DESIGN.md §9): the
Supervisor stops claiming, live calls get ``drain_grace`` seconds to finish, the rest are ended
politely (a goodbye, then hang-up; their tasks are analysed and retried as usual), then the
actors stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import ray

from actors.options import (
    PBX_NAME,
    SUPERVISOR_NAME,
    call_actor_name,
    pbx_gateway_options,
    supervisor_options,
)
from actors.pbx import PbxGatewayActor
from actors.supervisor import SupervisorRemote
from db.engine import Database
from db.repo.system import live_call_ids
from opendeep.settings import Settings

__all__ = ["SystemActors", "drain", "start_system_actors", "stop_system_actors"]

log = logging.getLogger(__name__)

START_TIMEOUT: Final = 120.0  # s for a new actor process to start on a loaded 2-core machine
CALL_POLL: Final = 1.0  # s between looks at the live calls while draining
GOODBYE_GRACE: Final = 20.0  # s for calls ended politely to say goodbye and hang up
SHUTDOWN_REASON: Final = "OpenDeep is shutting down"


@dataclass(frozen=True, slots=True)
class SystemActors:
    """Handles of the PbxGateway and the Supervisor of one namespace."""

    namespace: str
    gateway: Any
    supervisor: Any


async def start_system_actors(settings: Settings) -> SystemActors:
    """Get or create the PbxGateway (logged in to AMI) and the Supervisor (loop running)."""
    namespace = settings.ray_namespace
    gateway: Any = PbxGatewayActor.options(**pbx_gateway_options(namespace)).remote(
        settings, namespace
    )
    if not await asyncio.wait_for(gateway.ping.remote(), START_TIMEOUT):
        log.warning("the PbxGateway is not logged in to AMI yet; it keeps retrying")
    supervisor: Any = SupervisorRemote.options(**supervisor_options(namespace)).remote(
        settings, namespace
    )
    await asyncio.wait_for(supervisor.start.remote(), START_TIMEOUT)
    return SystemActors(namespace, gateway, supervisor)


async def _wait_for_calls(
    db: Database, live: list[uuid.UUID], within: float, hurry: asyncio.Event | None
) -> list[uuid.UUID]:
    """Poll until no call is live, ``within`` s passed or ``hurry`` is set; the calls still live."""
    deadline = time.monotonic() + within
    while live and time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
        if hurry is None:
            await asyncio.sleep(CALL_POLL)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurry.wait(), CALL_POLL)
        live = await live_call_ids(db)
    return live


async def drain(
    actors: SystemActors,
    db: Database,
    grace: float,
    *,
    hurry: asyncio.Event | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Stop claiming, let live calls finish within ``grace`` s, then end the rest politely.

    ``hurry`` (a second Ctrl-C) cuts the grace period short; the polite ending still happens.
    """
    with contextlib.suppress(ray.exceptions.RayError):
        await actors.supervisor.drain.remote()
    live = await live_call_ids(db)
    if live:
        say(f"Draining: waiting up to {grace:.0f} s for {len(live)} live call(s) to finish…")
    live = await _wait_for_calls(db, live, grace, hurry)
    if not live:
        return
    say(f"Ending {len(live)} call(s) politely…")
    for call_id in live:
        try:
            handle = ray.get_actor(call_actor_name(call_id), namespace=actors.namespace)
        except ValueError:
            continue  # its actor is gone: the reconcile on the next start closes the row
        handle.cancel.remote(SHUTDOWN_REASON)
    live = await _wait_for_calls(db, live, GOODBYE_GRACE, None)
    if live:
        say(f"{len(live)} call(s) did not end in time; the next start reconciles them.")


async def stop_system_actors(actors: SystemActors) -> None:
    """Close and kill the Supervisor and the PbxGateway (detached actors outlive a driver)."""
    for name, handle in ((SUPERVISOR_NAME, actors.supervisor), (PBX_NAME, actors.gateway)):
        try:
            await asyncio.wait_for(handle.close.remote(), 10.0)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("%s did not close cleanly: %s", name, exc)
        with contextlib.suppress(ValueError, ray.exceptions.RayError):
            ray.kill(handle, no_restart=True)
