"""The Realtime stand-in: a local websocket server speaking the OpenAI Realtime GA protocol.

Point the official SDK at it (``AsyncOpenAI(websocket_base_url=standin.url)``): it accepts
``…/realtime?model=…`` with any bearer key, answers ``session.created``, and serves each
connection as one :class:`~ai.sim.session.StandInSession`. A session learns its call from
``session.update``'s ``tracing.group_id`` and looks the call's scenario up — in the registry the
simulated PBX fills (call id → dialed number), or in calls assigned by hand — to know what the
callee says and what the scripted agent does. A call no scenario knows gets a generic agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ai.sim.records import SessionLog, StandInStats
from ai.sim.script import DEFAULT_SCRIPT, AgentScript
from ai.sim.session import Binding, SessionContext, StandInSession
from ai.sim.transcripts import CalleeLine, CalleeTranscriber
from ai.sim.vad import voiced_span_ms
from ai.sim.voice import AgentVoice
from asterisk.sim.scenarios import Scenario, World, load_world
from asterisk.sim.speech import SpeechRenderer

__all__ = ["RealtimeStandIn", "ScenarioLookup"]

log = logging.getLogger(__name__)

ScenarioLookup = Callable[[str], Scenario | None]
"""Call id → the scenario of that call (None if unknown)."""

_MAX_MESSAGE = 16 * 1024 * 1024  # the API takes appends of up to 15 MiB
_LINE_RATE = 24000


class RealtimeStandIn:
    """A local OpenAI Realtime (GA) server with energy VAD and a scripted agent per scenario."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        world: World | Path | str | None = None,
        lookup: ScenarioLookup | None = None,
        renderer: SpeechRenderer | None = None,
        speech_cache: Path | None = None,
        chunk_ms: int = 200,
        speed: float = 20.0,
        session_limit: float = 3600.0,
        noise_floor_dbfs: float | None = -56.0,
        path_prefix: str = "/v1",
    ) -> None:
        self.world = world if isinstance(world, World) else load_world(world)
        self.stats = StandInStats()
        self.sessions: list[SessionLog] = []
        """Every session, in the order they connected."""
        self._host, self._port, self._prefix = host, port, path_prefix.rstrip("/")
        self._lookup = lookup
        self._assigned: dict[str, Scenario] = {}
        self._scripts = {s.number: AgentScript.model_validate(s.agent) for s in self.world.scenario}
        self._lines: dict[str, list[CalleeLine]] = {}
        self._renderer = renderer or SpeechRenderer(speech_cache)
        self._context = SessionContext(
            stats=self.stats,
            voice=AgentVoice(self._renderer, noise_floor_dbfs=noise_floor_dbfs),
            bind=self._bind,
            register=self._register,
            chunk_ms=chunk_ms,
            speed=speed,
            session_limit=session_limit,
        )
        self._by_call: dict[str, list[SessionLog]] = {}
        self._server: Server | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """The listening host."""
        return self._host

    @property
    def port(self) -> int:
        """The listening port (the real one after :meth:`start` when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """What to pass as the SDK's ``websocket_base_url`` (``ws://host:port/v1``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self._port}{self._prefix}"

    @property
    def speech_engine(self) -> str:
        """``espeak-ng`` or ``synthetic``."""
        return self._renderer.engine

    async def start(self) -> None:
        """Listen for SDK connections."""
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._check_handshake,
            max_size=_MAX_MESSAGE,
            compression=None,
        )
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("Realtime stand-in listening on %s (speech: %s)", self.url, self.speech_engine)

    async def stop(self) -> None:
        """Close every session (close code 1001) and stop listening."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    # -- scenarios -------------------------------------------------------------------------
    def assign(self, call_id: str, scenario: Scenario | str) -> None:
        """Tie a call id to a scenario (by object, number or name) without the simulated PBX."""
        if isinstance(scenario, str):
            found = self.world.by_number(scenario)
            scenario = found if found is not None else self.world.by_name(scenario)
        self.script_for(scenario)  # a bad agent table fails here, not mid-call
        self._assigned[call_id] = scenario

    def script_for(self, scenario: Scenario | None) -> AgentScript:
        """The agent script of a scenario (the generic agent for None)."""
        if scenario is None:
            return DEFAULT_SCRIPT
        if self.world.by_number(scenario.number) == scenario:
            return self._scripts[scenario.number]
        return AgentScript.model_validate(scenario.agent)

    def _find(self, call_id: str | None) -> Scenario | None:
        if call_id is None:
            return None
        scenario = self._assigned.get(call_id)
        if scenario is None and self._lookup is not None:
            scenario = self._lookup(call_id)
        return scenario

    async def _bind(self, call_id: str | None, final: bool) -> Binding | None:
        scenario = self._find(call_id)
        if scenario is None and not final:
            return None
        if scenario is None:
            log.info("Realtime stand-in: call %s has no scenario; generic agent", call_id)
            return Binding(None, DEFAULT_SCRIPT, CalleeTranscriber([]))
        key = repr((scenario.callee.voice, [(s.say, s.cut_after) for s in scenario.callee.script]))
        lines = self._lines.get(key)
        if lines is None:
            lines = await asyncio.to_thread(self._callee_lines, scenario)
            self._lines[key] = lines
        return Binding(scenario.name, self.script_for(scenario), CalleeTranscriber(lines))

    def _callee_lines(self, scenario: Scenario) -> list[CalleeLine]:
        """Each ``say`` line of the callee with its voiced length (rendered like the PBX does)."""
        lines = []
        for step in scenario.callee.script:
            if step.say is None:
                continue
            pcm = self._renderer.render(step.say, _LINE_RATE, scenario.callee.voice)
            start, end = voiced_span_ms(pcm, _LINE_RATE)
            cut = None if step.cut_after is None else max(0, int(step.cut_after * 1000) - start)
            lines.append(CalleeLine(step.say, end - start, cut))
        return lines

    # -- sessions --------------------------------------------------------------------------
    def _register(self, record: SessionLog) -> None:
        if record not in self.sessions:
            self.sessions.append(record)
        if record.call_id is not None:
            known = self._by_call.setdefault(record.call_id, [])
            if record not in known:
                known.append(record)

    def sessions_for(self, call_id: str) -> list[SessionLog]:
        """Every session that named this call id in ``tracing.group_id``."""
        return list(self._by_call.get(call_id, []))

    def session_for(self, call_id: str) -> SessionLog | None:
        """The latest session of a call."""
        found = self._by_call.get(call_id)
        return found[-1] if found else None

    async def wait_session(self, call_id: str, within: float) -> SessionLog:
        """Wait until a session names this call id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (record := self.session_for(call_id)) is None:
            if loop.time() >= deadline:
                raise TimeoutError(f"no Realtime session for call {call_id}")
            await asyncio.sleep(0.01)
        return record

    # -- the websocket ---------------------------------------------------------------------
    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        model = (parse_qs(query).get("model") or [""])[0]
        auth = request.headers.get("Authorization", "")
        problem: tuple[HTTPStatus, str, str] | None = None
        if path != f"{self._prefix}/realtime":
            problem = (HTTPStatus.NOT_FOUND, "not_found", f"no Realtime endpoint at {path}")
        elif not auth.startswith("Bearer ") or not auth[7:].strip():
            problem = (HTTPStatus.UNAUTHORIZED, "invalid_api_key", "missing bearer API key")
        elif not model:
            problem = (HTTPStatus.BAD_REQUEST, "missing_model", "the model query is required")
        if problem is None:
            return None
        status, code, message = problem
        self.stats.refused_handshakes += 1
        log.warning("Realtime stand-in refused a connection to %s: %s", path, message)
        error = {"message": message, "type": "invalid_request_error", "code": code}
        response = connection.respond(status, json.dumps({"error": error}))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        request = ws.request
        assert request is not None  # set by the handshake
        model = (parse_qs(request.path.partition("?")[2]).get("model") or ["gpt-realtime"])[0]
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "")
        session = StandInSession(ws, self._context, model)
        await session.run(beta_header=beta)
