"""PbxGateway: the Ray actor that owns the one AMI connection and routes call events to calls.

``originate`` returns once Asterisk queued (or refused) the action; what became of the call
arrives later as an AMI :data:`~asterisk.ami_results.CallEvent`, which the gateway hands to the
actor named ``call:<id>`` by calling its ``on_pbx_event`` (DESIGN.md §2). Events of one call are
delivered in order by one small task per call; events for a call whose actor is gone are dropped
with a debug log. An Originate is never retried here (Ray's ``max_task_retries`` stays 0 and the
AMI client never re-sends): a second attempt could dial the callee twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from actors.options import call_actor_name
from asterisk.ami import AmiClient
from asterisk.ami_results import (
    AckStatus,
    AmiError,
    CallEvent,
    OriginateAck,
    OriginateRequest,
)
from opendeep.settings import Settings, get_settings

__all__ = ["PbxGateway", "PbxGatewayActor"]

log = logging.getLogger(__name__)

CONNECT_WAIT = 5.0  # s an action waits for the AMI login (first connect or a reconnect)
DELIVERY_TIMEOUT = 10.0  # s for a CallActor to accept one event before we log and move on
DTMF_DURATION_MS = 250  # each PlayDTMF tone...
DTMF_GAP_S = 0.1  # ...and the silence after it, so consecutive digits stay distinct


@dataclass(slots=True)
class _Route:
    """The ordered event stream of one call: a queue drained by one delivery task."""

    call_id: uuid.UUID
    queue: asyncio.Queue[CallEvent] = field(default_factory=asyncio.Queue)
    handle: ActorHandle[Any] | None = None
    task: asyncio.Task[None] | None = None


class PbxGateway:
    """Owner of the AMI client; CallActors ask it to dial, hang up and play DTMF."""

    def __init__(self, settings: Settings | None = None, namespace: str | None = None) -> None:
        self._settings = settings if settings is not None else get_settings()
        self._namespace = namespace
        self._client: AmiClient | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._routes: dict[uuid.UUID, _Route] = {}
        self.delivered = 0
        self.dropped = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def _ensure_client(self) -> AmiClient:
        """Connect on first use (an actor's __init__ cannot await); later drops self-heal."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is None:
                s = self._settings
                client = AmiClient(
                    host=s.ami_host,
                    port=s.ami_port,
                    username=s.ami_user,
                    secret=s.ami_secret.get_secret_value(),
                    on_event=self._on_event,
                )
                await client.connect()  # raises: the caller sees why (refused login, no server)
                self._client = client
        return self._client

    def _namespace_name(self) -> str:
        if self._namespace is None:
            self._namespace = ray.get_runtime_context().namespace
        return self._namespace

    async def close(self) -> None:
        """Log off AMI and stop every delivery task."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        tasks = [r.task for r in self._routes.values() if r.task is not None]
        self._routes.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- actions -----------------------------------------------------------------------------
    async def ping(self) -> bool:
        """True while logged in to AMI (connects first if never connected)."""
        try:
            client = await self._ensure_client()
        except (OSError, AmiError) as exc:
            log.warning("PbxGateway: AMI unreachable: %s", exc)
            return False
        return client.connected

    async def originate(self, request: OriginateRequest) -> OriginateAck:
        """Send the Originate once; return when Asterisk queued it, refused it, or went silent."""
        try:
            client = await self._ensure_client()
            await client.wait_connected(CONNECT_WAIT)
        except (OSError, AmiError) as exc:
            log.warning("call %s: AMI not available, nothing dialed: %s", request.call_id, exc)
            return OriginateAck(request.call_id, "", AckStatus.REFUSED, f"AMI not available: {exc}")
        # Resolve the call's handle before dialing, so its first event finds it ready.
        await self._resolve(self._route(request.call_id))
        return await client.originate(request)

    async def hangup(self, call_id: uuid.UUID, cause: int = 16) -> bool:
        """Hang the call's channel up over AMI; False when AMI or the channel is gone."""
        try:
            client = await self._ensure_client()
            await client.wait_connected(CONNECT_WAIT)
            await client.hangup(call_id, cause)
        except (OSError, AmiError) as exc:
            log.info("call %s: AMI hangup not done: %s", call_id, exc)
            return False
        return True

    async def play_dtmf(self, call_id: uuid.UUID, digits: str) -> int:
        """Play ``digits`` out of band (AMI PlayDTMF), one at a time; returns how many were sent."""
        sent = 0
        try:
            client = await self._ensure_client()
            for digit in digits:
                if sent:
                    await asyncio.sleep(DTMF_DURATION_MS / 1000 + DTMF_GAP_S)
                await client.play_dtmf(call_id, digit, duration_ms=DTMF_DURATION_MS)
                sent += 1
        except (OSError, AmiError) as exc:
            log.warning("call %s: PlayDTMF stopped after %d digit(s): %s", call_id, sent, exc)
        return sent

    async def forget(self, call_id: uuid.UUID) -> None:
        """The call is over: stop tracking it and drop its route (later events are dropped)."""
        if self._client is not None:
            self._client.forget(call_id)
        route = self._routes.pop(call_id, None)
        if route is not None and route.task is not None and route.queue.empty():
            route.task.cancel()

    async def stats(self) -> dict[str, Any]:
        """Counters for tests and the dashboard."""
        client = self._client
        return {
            "connected": bool(client and client.connected),
            "reconnects": client.reconnects if client else 0,
            "tracked_calls": client.tracked_calls if client else 0,
            "routes": len(self._routes),
            "delivered": self.delivered,
            "dropped": self.dropped,
        }

    # -- event routing -------------------------------------------------------------------------
    def _route(self, call_id: uuid.UUID) -> _Route:
        route = self._routes.get(call_id)
        if route is None:
            route = self._routes[call_id] = _Route(call_id)
        return route

    async def _resolve(self, route: _Route) -> ActorHandle[Any] | None:
        """The call's actor, looked up by name once (off the loop: it is a blocking GCS call)."""
        if route.handle is None:
            name, namespace = call_actor_name(route.call_id), self._namespace_name()
            try:
                route.handle = await asyncio.to_thread(ray.get_actor, name, namespace=namespace)
            except ValueError:
                log.debug("call %s: no actor named %s in %s", route.call_id, name, namespace)
        return route.handle

    def _on_event(self, event: CallEvent) -> None:
        """AMI client callback (on the loop, must not block): queue for the call's task."""
        route = self._route(event.call_id)
        route.queue.put_nowait(event)
        if route.task is None or route.task.done():
            route.task = asyncio.get_running_loop().create_task(
                self._deliver(route), name=f"pbx-deliver-{event.call_id}"
            )
            route.task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("PbxGateway: %s failed", task.get_name(), exc_info=exc)

    async def _deliver(self, route: _Route) -> None:
        """Hand the call's queued events to its actor, one at a time, in order."""
        handle = await self._resolve(route)
        while not route.queue.empty():
            event = route.queue.get_nowait()
            if handle is None:
                self.dropped += 1
                log.debug("call %s: no actor, dropped %s", route.call_id, type(event).__name__)
                continue
            try:
                await asyncio.wait_for(handle.on_pbx_event.remote(event), DELIVERY_TIMEOUT)
                self.delivered += 1
            except RayActorError:
                self.dropped += 1
                log.debug("call %s: actor gone, dropped %s", route.call_id, type(event).__name__)
                handle = route.handle = None
            except TimeoutError:
                log.warning("call %s: %s not accepted in time", route.call_id, type(event).__name__)
        if handle is None:
            self._routes.pop(route.call_id, None)


PbxGatewayActor = ray.remote(PbxGateway)
"""The actor class; create it with ``PbxGatewayActor.options(**pbx_gateway_options(ns))``."""
