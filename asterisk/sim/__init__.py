"""The simulated PBX: an AMI server and AudioSocket callees that behave like Asterisk 22."""

from __future__ import annotations

from asterisk.sim.callee import CallRecord
from asterisk.sim.pbx import SimulatedPbx
from asterisk.sim.scenarios import World, load_world

__all__ = ["CallRecord", "SimulatedPbx", "World", "load_world"]
