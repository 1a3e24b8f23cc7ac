"""The task-lifecycle harness: a database, a tenant, a Supervisor, and a short simulated world.

Built on the ``e2e`` fixture (one Ray runtime per session, a fresh namespace and simulated world
per test). ``lifecycle`` gives a SQLite database; ``make_lifecycle(url=pg_url)`` the same on
PostgreSQL. A test module imports ``lifecycle_fixture`` and ``make_lifecycle_fixture`` to use
them (pytest registers them under ``lifecycle`` and ``make_lifecycle``). Every actor left in
the test's namespace (supervisor, TaskActors, CallActors, the PbxGateway) is killed at the
end, so detached actors never outlive their test.

The world's scripts are short (a call lasts a few seconds) and the settings tiny (1 s backoff,
0.2 s tick, 5 s lease), so a retry cycle costs about as much as starting its two actors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from actors.options import pbx_gateway_options, supervisor_options, task_actor_name
from actors.pbx import PbxGatewayActor
from actors.supervisor import SupervisorRemote
from actors.task_clock import Clock
from asterisk.sim.scenarios import Scenario, World
from db.engine import Database, open_database
from db.migrate import upgrade
from db.repo import accounts, tasks
from db.repo.views import TaskDetail
from db.states import TaskStatus
from opendeep.settings import Settings
from tests.e2e.conftest import E2E

TENANT = "Acme Dental"
END_COMPLETED = {"name": "end_call", "arguments": {"reason": "completed"}}

# Numbers: fictional +1 415 555 02xx (America/Los_Angeles).
DONE = "+14155550200"
BUSY = "+14155550201"
NO_ANSWER = "+14155550202"
VOICEMAIL = "+14155550203"
MACHINE = "+14155550204"
CALL_ME_THURSDAY = "+14155550205"
RESCHEDULE_TOOL = "+14155550206"
DO_NOT_CALL = "+14155550207"
NEEDS_INFO = "+14155550208"
LONG_TALK = "+14155550209"
QUICK = "+14155550210"
POLICY_NUMBER = "P-4471-Z"
PATIENCE = 12.0
"""s a callee waits for the agent at most (a ``listen`` ends as soon as the agent spoke and
fell silent, so this costs nothing unless the machine is slow: then it keeps calls from
ending early)."""


def _scenario(number: str, name: str, callee: dict[str, Any], agent: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(
        {"number": number, "name": name, "callee": callee, "agent": agent}
    )


def _done(number: str, name: str, *, hold: float = 0.0) -> Scenario:
    """Answers, agrees, the agent closes the job: SUCCESS (``hold`` s of thinking first)."""
    script: list[dict[str, Any]] = [{"say": "Hello?"}, {"listen": PATIENCE}]
    if hold:
        script += [{"say": "Let me think."}, {"pause": hold}]
    script += [{"say": "Yes, fine."}, {"listen": PATIENCE}, {"hangup": True}]
    turns: list[dict[str, Any]] = [{"say": "Hi, AI for Acme. Is Tuesday okay?"}]
    if hold:
        turns.append({"say": "Sure."})
    turns.append({"say": "Thanks, bye!", "tool": END_COMPLETED})
    return _scenario(
        number, name, {"ring": 0.2, "script": script}, {"greeting": None, "turns": turns}
    )


def _needs_info(*, answered_agent: bool = True) -> Scenario:
    """Asks for a policy number; the agent asks the creator (or, on a callback, knows it).

    The callee's second ``listen`` covers the time the agent waits for the answer: it ends
    when the agent speaks again (the answer, or its goodbye after the HITL timeout).
    """
    callee = {
        "ring": 0.2,
        "script": [
            {"say": "Claims."},
            {"listen": PATIENCE},
            {"say": "Policy number?"},
            {"listen": PATIENCE},
            {"listen": 4.0},
            {"say": "Approved. Bye."},
            {"listen": PATIENCE},
            {"hangup": True},
        ],
    }
    asking = [
        {"say": "Hi, AI for Acme, about claim 4471."},
        {
            "tool": {
                "name": "request_user_info",
                "arguments": {
                    "question": "What is the policy number?",
                    "timeout_seconds": 10,
                    "recipient_message": "One moment.",
                },
            }
        },
        {"tool_output": "request_user_info", "say": "{recipient_message}"},
        {
            "text": "(?i)did not answer|no answer|not answer|timed? ?out|call (?:you |them )?back",
            "say": "I will call back. Bye!",
            "tool": {"name": "end_call", "arguments": {"reason": "callback_requested"}},
        },
        # The answer is the last quoted text ("…answering "<question>": "<answer>". …").
        {"text": ':\\s*["“](?P<answer>[^"”]+)["”]', "say": "It is {answer}."},
        {"callee": 3, "say": "Thanks, bye!", "tool": END_COMPLETED},
    ]
    knowing = [
        {"say": "Hi, AI for Acme, calling back about claim 4471."},
        {"say": f"It is {POLICY_NUMBER}."},
        {"callee": 3, "say": "Thanks, bye!", "tool": END_COMPLETED},
    ]
    agent = {"greeting": None, "turns": asking if answered_agent else knowing}
    return _scenario(NEEDS_INFO, "needs-info", callee, agent)


def _short(number: str, name: str, line: str, agent_turns: list[dict[str, Any]]) -> Scenario:
    """Hello, one line from the callee, the agent's answer."""
    script = [
        {"say": "Hello?"},
        {"listen": PATIENCE},
        {"say": line},
        {"listen": PATIENCE},
        {"hangup": True},
    ]
    return _scenario(
        number, name, {"ring": 0.2, "script": script}, {"greeting": None, "turns": agent_turns}
    )


_MACHINE_SCRIPT = [{"say": "Leave a message."}, {"beep": 0.3}, {"listen": 5.0}, {"hangup": True}]
_CALLBACK_END = {"name": "end_call", "arguments": {"reason": "callback_requested"}}

LIFECYCLE_WORLD = World.model_validate(
    {
        "pbx": {"silence_hangup": 2.0, "context_rate": 24000, "connect_timeout": 1.0},
        "scenario": [
            _done(DONE, "done").model_dump(),
            _done(LONG_TALK, "long-talk", hold=6.0).model_dump(),
            {"number": BUSY, "name": "busy", "callee": {"behavior": "busy", "ring": 0}},
            {"number": NO_ANSWER, "name": "no-answer", "callee": {"behavior": "no_answer"}},
            {
                "number": VOICEMAIL,
                "name": "voicemail",
                "callee": {"ring": 0.2, "script": _MACHINE_SCRIPT},
                "agent": {
                    "greeting": None,
                    "turns": [
                        {
                            "say": "Bye.",
                            "tool": {"name": "end_call", "arguments": {"reason": "voicemail"}},
                        }
                    ],
                },
            },
            {
                "number": MACHINE,
                "name": "machine",
                "callee": {
                    "ring": 0.2,
                    "amd": {"status": "MACHINE", "cause": "MAXWORDS-3-2", "after": 0.5},
                    "script": _MACHINE_SCRIPT,
                },
                "agent": {"greeting": None},
            },
            _short(
                CALL_ME_THURSDAY,
                "call-me-thursday",
                "In a meeting. Call me back Thursday after 3.",
                [{"say": "Hi, AI for Acme."}, {"say": "Sure, bye.", "tool": _CALLBACK_END}],
            ).model_dump(),
            _short(
                RESCHEDULE_TOOL,
                "reschedule-tool",
                "Not now. Tomorrow at 10 am.",
                [
                    {"say": "Hi, AI for Acme."},
                    {
                        "tool": {
                            "name": "reschedule_call",
                            "arguments": {"when": "tomorrow at 10am", "reason": "callee busy"},
                        },
                    },
                    {
                        "tool_output": "reschedule_call",
                        "say": "Tomorrow at ten. Bye.",
                        "tool": _CALLBACK_END,
                    },
                ],
            ).model_dump(),
            _short(
                DO_NOT_CALL,
                "do-not-call",
                "Don't call me again.",
                [
                    {"say": "Hi, AI for Acme."},
                    {
                        "say": "Understood, bye.",
                        "tool": {"name": "end_call", "arguments": {"reason": "do_not_call"}},
                    },
                ],
            ).model_dump(),
            _needs_info().model_dump(),
            {
                "number": QUICK,
                "name": "quick",
                "callee": {
                    "ring": 0.1,
                    "script": [{"say": "Hi."}, {"listen": PATIENCE}, {"hangup": True}],
                },
                "agent": {
                    "greeting": None,
                    "turns": [{"say": "Done, bye.", "tool": END_COMPLETED}],
                },
            },
        ],
    }
)
"""The world of the lifecycle tests (``@pytest.mark.world(LIFECYCLE_WORLD)``)."""

NEEDS_INFO_CALLBACK = _needs_info(answered_agent=False)
"""The same callee, with an agent that already knows the policy number (the callback)."""


@dataclass
class Lifecycle:
    """One test's running system: database, tenant, gateway and supervisor in a namespace."""

    e2e: E2E
    db: Database
    url: str
    settings: Settings
    tenant_id: uuid.UUID
    clock: Clock
    supervisors: list[Any] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        """The test's Ray namespace."""
        return self.e2e.namespace

    @property
    def pbx(self) -> Any:
        """The simulated PBX (``calls``, ``originates_received``)."""
        return self.e2e.world.sim.pbx

    async def start_supervisor(
        self, namespace: str | None = None, *, settings: Settings | None = None
    ) -> Any:
        """A Supervisor (and its namespace's PbxGateway), started."""
        ns = namespace or self.namespace
        use = settings or self.settings
        if ns == self.namespace:
            await self.e2e.start_gateway(use)
        else:
            gateway = PbxGatewayActor.options(**pbx_gateway_options(ns)).remote(use, ns)
            assert await gateway.ping.remote()
        handle = SupervisorRemote.options(**supervisor_options(ns)).remote(
            use, ns, clock=self.clock
        )
        await handle.start.remote()
        self.supervisors.append(handle)
        return handle

    async def add_task(self, number: str, **values: Any) -> uuid.UUID:
        """A new PENDING task calling ``number``, due now unless told otherwise."""
        values.setdefault("objective", "Move the dental appointment to next week.")
        values.setdefault("callee_name", "Bright Smile Dental")
        view = await tasks.create_task(
            self.db, self.tenant_id, phone=number, settings=self.settings, **values
        )
        for supervisor in self.supervisors:
            supervisor.wake.remote()
        return view.id

    async def detail(self, task_id: uuid.UUID) -> TaskDetail:
        """The task with its calls, events and questions."""
        return await tasks.get_task(self.db, self.tenant_id, task_id)

    async def kinds(self, task_id: uuid.UUID) -> list[str]:
        """The kinds of the task's events, in order."""
        return [e.kind.value for e in (await self.detail(task_id)).events]

    async def wait_for(
        self,
        task_id: uuid.UUID,
        check: Callable[[TaskDetail], bool],
        *,
        within: float = 60.0,
        what: str = "the condition",
    ) -> TaskDetail:
        """Poll the task until ``check`` holds."""
        deadline = time.monotonic() + within
        while True:
            detail = await self.detail(task_id)
            if check(detail):
                return detail
            if time.monotonic() > deadline:
                kinds = [e.kind.value for e in detail.events]
                raise AssertionError(
                    f"{what} not reached within {within} s: {detail.task.status} {kinds}"
                )
            await asyncio.sleep(0.05)

    async def wait_status(
        self, task_id: uuid.UUID, *statuses: TaskStatus, within: float = 60.0
    ) -> TaskDetail:
        """Wait until the task is in one of ``statuses``."""
        return await self.wait_for(
            task_id, lambda d: d.task.status in statuses, within=within, what=f"status {statuses}"
        )

    async def wait_event(
        self, task_id: uuid.UUID, kind: str, *, count: int = 1, within: float = 60.0
    ) -> TaskDetail:
        """Wait until the task's trail holds ``count`` events of ``kind``."""
        return await self.wait_for(
            task_id,
            lambda d: sum(e.kind.value == kind for e in d.events) >= count,
            within=within,
            what=f"{count} x {kind}",
        )

    def use_scenario(self, scenario: Scenario) -> None:
        """Replace the world's scenario for ``scenario.number`` (next Originate on it sees it)."""
        sim = self.e2e.world.sim
        others = [s for s in sim.world.scenario if s.number != scenario.number]
        world = sim.world.model_copy(update={"scenario": (*others, scenario)})
        sim.world = world
        sim.pbx.world = world

    def originates(self, calls: Iterable[Any]) -> dict[str, int]:
        """How many Originates the PBX received for each of these calls (by ChannelId)."""
        return {str(c.id): self.pbx.originates_received[str(c.id)] for c in calls}

    def dialed(self, number: str) -> int:
        """How many calls the PBX placed to ``number``."""
        return sum(1 for r in self.pbx.calls.values() if r.number == number)

    def session_instructions(self, call_id: uuid.UUID) -> str:
        """The instructions the Realtime stand-in got for a call (its session.update)."""
        log = self.e2e.world.sim.realtime.session_for(str(call_id))
        assert log is not None, f"no Realtime session for call {call_id}"
        return log.instructions or ""

    async def task_actor(self, task_id: uuid.UUID) -> Any:
        """The handle of ``task:<id>`` (waits until it exists)."""
        deadline = time.monotonic() + 20
        while True:
            try:
                return await asyncio.to_thread(
                    ray.get_actor, task_actor_name(task_id), namespace=self.namespace
                )
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


def lifecycle_settings(e2e: E2E, url: str, **changes: Any) -> Settings:
    """Tiny timings for the lifecycle tests on top of the world's endpoints."""
    values: dict[str, Any] = {
        "database_url": url,
        "retry_backoff": "1s",
        "heartbeat_lease": 5.0,
        "scheduler_tick": 0.2,
        "destination_daily_cap": 0,
        "analysis": "rules",
        "ring_timeout": 1.5,
        "hitl_timeout_min": 0.5,
        "hitl_timeout_default": 2.5,
        "hitl_timeout_max": 2.5,
        "max_concurrent_calls": 100,
    }
    values.update(changes)
    return e2e.settings(**values)


async def kill_namespace(namespace: str) -> None:
    """Kill every named actor of ``namespace`` (detached actors outlive their creator)."""
    names = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
    for entry in names:
        if entry["namespace"] != namespace:
            continue
        try:
            handle = await asyncio.to_thread(ray.get_actor, entry["name"], namespace=namespace)
            await asyncio.to_thread(ray.kill, handle)
        except (ValueError, ray.exceptions.RayError):
            pass


MakeLifecycle = Callable[..., Awaitable[Lifecycle]]


@pytest.fixture(name="make_lifecycle")
async def make_lifecycle_fixture(e2e: E2E, tmp_path: Any) -> AsyncIterator[MakeLifecycle]:
    """``await make_lifecycle(url=None, supervisor=True, clock=None, tenant={...}, **settings)``."""
    made: list[Lifecycle] = []
    namespaces = {e2e.namespace}

    async def make(
        *,
        url: str | None = None,
        supervisor: bool = True,
        clock: Clock | None = None,
        tenant: dict[str, Any] | None = None,
        **changes: Any,
    ) -> Lifecycle:
        url = url or f"sqlite+aiosqlite:///{tmp_path / 'lifecycle.db'}"
        await upgrade(url)
        settings = lifecycle_settings(e2e, url, **changes)
        db = open_database(url, pool_size=2)
        values: dict[str, Any] = {
            "allowed_countries": None,
            "max_concurrent_calls": 20,
            "dial_rate_per_minute": 1000,
            "daily_call_quota": 10000,
            "window": (dt.time.min, dt.time.max, tuple(range(7))),
            "destination_cap_exempt": True,
        }
        values.update(tenant or {})
        view = await accounts.create_tenant(db, name=TENANT, settings=settings, **values)
        run = Lifecycle(e2e, db, url, settings, view.id, clock or Clock())
        made.append(run)
        if supervisor:
            await run.start_supervisor()
        return run

    try:
        yield make
    finally:
        for run in made:
            namespaces.update(ns for ns in (await _supervisor_namespaces(run)) if ns is not None)
        for ns in namespaces:
            await kill_namespace(ns)
        for run in made:
            await run.db.close()


async def _supervisor_namespaces(run: Lifecycle) -> list[str | None]:
    found: list[str | None] = []
    for handle in run.supervisors:
        try:
            found.append((await asyncio.wait_for(handle.status.remote(), 5))["namespace"])
        except (TimeoutError, ray.exceptions.RayError):
            found.append(None)
    return found


@pytest.fixture(name="lifecycle")
async def lifecycle_fixture(make_lifecycle: MakeLifecycle) -> Lifecycle:
    """The running system on SQLite with a supervisor."""
    return await make_lifecycle()
