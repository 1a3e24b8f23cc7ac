"""End-to-end fixtures: one local Ray runtime per pytest session, one simulated world per test.

Ray: ``ray.init(address="local")`` once (never joins a cluster someone else runs), a short temp
dir of the session's own, ``call_slot`` resources for CallActors. Every test gets a fresh
namespace, so detached named actors (``pbx``, ``task:…``, ``call:…``) never leak between tests,
and the actors a test made are killed at its end.

The simulated world (simulated PBX + Realtime stand-in) runs in the test process, on the test's
event loop, on free loopback ports; a PbxGateway actor logs in to its AMI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.call import CallActorRemote
from actors.call_spec import CallSpec
from actors.options import call_actor_options, pbx_gateway_options, task_actor_name
from actors.pbx import PbxGatewayActor
from ai.brief import CallBrief
from asterisk.sim.scenarios import World
from opendeep.settings import Settings
from tests.e2e.owner import RecordingOwner
from tests.e2e.world import AMI_SECRET, AMI_USER, WORLD, start_world


def pytest_configure(config: pytest.Config) -> None:
    """``@pytest.mark.world(World)``: the simulated world a test's calls run in."""
    config.addinivalue_line("markers", "world(world): the simulated world of an e2e test")


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One local Ray for the whole session (ray.init costs 4–10 s here)."""
    temp = tempfile.mkdtemp(prefix="odr", dir="/tmp")  # short: Ray's socket paths are limited
    # More workers may start at once than there are CPUs: calls are I/O bound (DESIGN.md §9).
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "4")
    ray.init(
        address="local",
        num_cpus=2,
        resources={"call_slot": 200},
        include_dashboard=False,
        # Loopback only: tests never send traffic beyond this machine's loopback.
        _node_ip_address="127.0.0.1",
        namespace="opendeep-e2e",
        _temp_dir=temp,
        log_to_driver=os.environ.get("OPENDEEP_E2E_ACTOR_LOGS", "") == "1",
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def make_brief(**changes: Any) -> CallBrief:
    """A small task brief (what the TaskActor would hand a CallActor)."""
    values: dict[str, Any] = {
        "task_id": uuid.uuid4(),
        "objective": "Move the dental appointment to next week.",
        "context": "Patient: Alex Smith, appointment on Monday at 9.",
        "callee_name": "Bright Smile Dental",
        "on_behalf_of": "Alex Smith",
        "timezone": "America/Los_Angeles",
    }
    values.update(changes)
    return CallBrief(**values)


@dataclass
class CallRun:
    """One call under test: its spec, its actor, its owner."""

    spec: CallSpec
    call: Any
    owner: Any
    log_path: Path

    async def messages(self) -> list[dict[str, Any]]:
        """What the owner has applied so far (waits while a restarted owner comes back)."""
        deadline = time.monotonic() + 15.0
        while True:
            try:
                result: list[dict[str, Any]] = await self.owner.messages.remote()
                return result
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
                # Tests kill and restart the owner mid-call; it is briefly unreachable.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def wait_for(self, kind: str, within: float = 20.0) -> dict[str, Any]:
        """The first message of ``kind`` (waits for it)."""
        deadline = time.monotonic() + within
        while True:
            for msg in await self.messages():
                if msg["kind"] == kind:
                    return msg
            if time.monotonic() > deadline:
                kinds = [m["kind"] for m in await self.messages()]
                raise AssertionError(f"no {kind} message within {within} s; got {kinds}")
            await asyncio.sleep(0.05)

    async def ended(self, within: float = 30.0) -> dict[str, Any]:
        """The Ended payload (waits for it)."""
        payload: dict[str, Any] = (await self.wait_for("ended", within))["payload"]
        return payload

    async def kinds(self) -> list[str]:
        """The kinds of every message applied so far."""
        return [m["kind"] for m in await self.messages()]


@dataclass
class E2E:
    """A test's namespace, world and actors."""

    namespace: str
    tmp: Path
    world: Any
    base_settings: dict[str, Any]
    actors: list[Any] = field(default_factory=list)
    gateway: Any = None

    def settings(self, **changes: Any) -> Settings:
        """Settings pointing at this test's world, with short timeouts."""
        values = {**self.base_settings, **changes}
        return Settings(_env_file=None, **values)

    async def start_gateway(self, settings: Settings) -> Any:
        """The PbxGateway of this namespace, logged in to the simulated PBX."""
        if self.gateway is None:
            options = pbx_gateway_options(self.namespace)
            self.gateway = PbxGatewayActor.options(**options).remote(settings, self.namespace)
            self.actors.append(self.gateway)
            assert await self.gateway.ping.remote()
        return self.gateway

    async def place_call(
        self,
        number: str,
        *,
        settings: Settings | None = None,
        brief: CallBrief | None = None,
        verdict: str = "TIMED_OUT",
        start: bool = True,
        **actor_kwargs: Any,
    ) -> CallRun:
        """Owner + CallActor for ``number``; the call starts at once unless ``start=False``."""
        settings = settings or self.settings()
        await self.start_gateway(settings)
        brief = brief or make_brief()
        log_path = self.tmp / f"owner-{brief.task_id}.jsonl"
        owner = RecordingOwner.options(  # type: ignore[attr-defined]
            name=task_actor_name(brief.task_id), namespace=self.namespace, lifetime="detached"
        ).remote(str(log_path), verdict)
        self.actors.append(owner)
        await owner.info.remote()
        spec = CallSpec.for_task(
            call_id=uuid.uuid4(), number=number, namespace=self.namespace, brief=brief
        )
        call: Any = CallActorRemote.options(
            **call_actor_options(spec.call_id, self.namespace)
        ).remote(spec, settings, **actor_kwargs)
        self.actors.append(call)
        if start:
            await call.start.remote()
        return CallRun(spec, call, owner, log_path)


@pytest.fixture
async def e2e(
    ray_runtime: None, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[E2E]:
    """A fresh namespace and simulated world for one test; its actors are killed at the end."""
    marker = request.node.get_closest_marker("world")
    world_def: World = marker.args[0] if marker else WORLD
    sim = await start_world(world_def, tmp_path)
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"
    base = {
        "ami_host": "127.0.0.1",
        "ami_port": sim.ami_port,
        "ami_user": AMI_USER,
        "ami_secret": AMI_SECRET,
        "audiosocket_bind_host": "127.0.0.1",
        "ring_timeout": 4.0,
        "connect_timeout": 2.0,
        "max_call_duration": 60.0,
        "hitl_timeout_min": 0.5,
        "hitl_timeout_default": 2.0,
        "hitl_timeout_max": 5.0,
        "realtime_base_url": sim.realtime_url,
        "var_dir": tmp_path / "var",
        "ray_namespace": namespace,
        "log_level": "INFO",
    }
    run = E2E(namespace=namespace, tmp=tmp_path, world=sim, base_settings=base)
    try:
        yield run
    finally:
        for handle in reversed(run.actors):
            with contextlib.suppress(Exception):  # already gone (a call exits by itself)
                ray.kill(handle)
        await sim.stop()
