"""The simulated world: the simulated PBX and the Realtime stand-in in one process.

The two sides correlate a call through real protocol fields only. The PBX learns the call id from
the Originate's ``ChannelId`` and the number from its ``Channel`` (and keeps both in
``pbx.calls``); the Realtime stand-in learns the call id from ``session.update``'s
``tracing.group_id`` (which production sets too) and looks the number — hence the scenario — up
in that registry. Tests read both sides' records of a call through :meth:`SimulatedWorld.call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai.sim.records import SessionLog
from ai.sim.server import RealtimeStandIn
from asterisk import codec
from asterisk.sim import CallRecord, SimulatedPbx
from asterisk.sim.scenarios import Scenario, World, load_world

__all__ = ["AgentAudioRun", "SimulatedWorld", "WorldCall", "heard_runs"]


@dataclass(frozen=True, slots=True)
class WorldCall:
    """Both sides' records of one call (either may be missing)."""

    call_id: str
    pbx: CallRecord | None
    agent: SessionLog | None


@dataclass(frozen=True, slots=True)
class AgentAudioRun:
    """A stretch of non-silent audio the simulated callee received, frame by frame."""

    start: float
    """Event-loop time the first frame arrived."""
    end: float
    """Event-loop time the last frame arrived."""
    ms: float
    """Audio length of the run (frames × their duration)."""


def heard_runs(record: CallRecord) -> list[AgentAudioRun]:
    """Runs of consecutive non-silent audio frames the callee received from OpenDeep.

    The stand-in's speech never contains digital silence (it lies on a faint noise floor) and a
    client sends all-zero frames when it has nothing to say, so each run is one stretch of agent
    audio as the callee heard it: what a barge-in test compares with ``audio_end_ms``.
    """
    rate = record.rate or 8000
    kind = codec.Kind.SLIN_24K if rate == 24000 else codec.Kind.SLIN_8K
    heard = bytes(record.heard)
    runs: list[AgentAudioRun] = []
    offset = 0
    start: float | None = None
    last, total_ms = 0.0, 0.0
    for frame in record.frames:
        if frame.kind != kind or frame.size == 0:
            continue  # the callee keeps only audio of the call's kind in ``heard``
        payload = heard[offset : offset + frame.size]
        offset += frame.size
        if np.any(np.frombuffer(payload, dtype="<i2")):
            if start is None:
                start, total_ms = frame.t, 0.0
            last = frame.t
            total_ms += frame.size / 2 / rate * 1000
        elif start is not None:
            runs.append(AgentAudioRun(start, last, total_ms))
            start = None
    if start is not None:
        runs.append(AgentAudioRun(start, last, total_ms))
    return runs


class SimulatedWorld:
    """Runs the simulated PBX and the Realtime stand-in together on one scenario file."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ami_port: int | None = None,
        realtime_port: int = 0,
        username: str | None = None,
        secret: str | None = None,
        world: World | Path | str | None = None,
        speech_cache: Path | None = None,
        chunk_ms: int = 200,
        speed: float = 20.0,
    ) -> None:
        self.world = world if isinstance(world, World) else load_world(world)
        self.pbx = SimulatedPbx(
            host=host,
            port=ami_port,
            username=username,
            secret=secret,
            world=self.world,
            speech_cache=speech_cache,
        )
        self.realtime = RealtimeStandIn(
            host=host,
            port=realtime_port,
            world=self.world,
            lookup=self.scenario_of_call,
            speech_cache=speech_cache,
            chunk_ms=chunk_ms,
            speed=speed,
        )

    @property
    def realtime_url(self) -> str:
        """The stand-in's URL for the SDK's ``websocket_base_url``."""
        return self.realtime.url

    def scenario_of_call(self, call_id: str) -> Scenario | None:
        """The scenario of a call the PBX was asked to dial (by its ChannelId)."""
        record = self.pbx.calls.get(call_id)
        return None if record is None else self.world.by_number(record.number)

    async def start(self) -> None:
        """Start the AMI server and the Realtime server."""
        await self.pbx.start()
        try:
            await self.realtime.start()
        except BaseException:
            await self.pbx.stop()
            raise

    async def stop(self) -> None:
        """Stop both servers (the PBX hangs up its calls)."""
        try:
            await self.realtime.stop()
        finally:
            await self.pbx.stop()

    def call(self, call_id: str) -> WorldCall:
        """Both sides' records of a call."""
        return WorldCall(call_id, self.pbx.calls.get(call_id), self.realtime.session_for(call_id))

    async def wait_call_done(self, call_id: str, within: float) -> WorldCall:
        """Wait until the PBX has ended the call, then return both records."""
        await self.pbx.wait_call_done(call_id, within)
        return self.call(call_id)
