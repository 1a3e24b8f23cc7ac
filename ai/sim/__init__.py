"""The simulated voice AI: a local OpenAI Realtime (GA) server with a scripted agent.

:class:`RealtimeStandIn` is the server; :class:`SimulatedWorld` runs it together with the
simulated PBX on one scenario file. Production code never imports this package.
"""

from __future__ import annotations

from ai.sim.records import SessionLog, StandInStats
from ai.sim.script import AgentScript
from ai.sim.server import RealtimeStandIn
from ai.sim.world import SimulatedWorld

__all__ = ["AgentScript", "RealtimeStandIn", "SessionLog", "SimulatedWorld", "StandInStats"]
