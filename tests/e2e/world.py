"""The simulated world of the end-to-end tests: numbers, callees and scripted agents.

One :class:`~asterisk.sim.scenarios.World` describes both sides of every test call (the callee
for the simulated PBX, the ``agent`` table for the Realtime stand-in), keyed by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ai.sim.world import SimulatedWorld
from asterisk.sim import SimulatedPbx
from asterisk.sim.scenarios import World, load_world

AMI_USER, AMI_SECRET = "opendeep", "e2e-secret"

GREETING = "Hi, I'm an AI assistant for Alex."
LONG_REPLY = (
    "I am calling because Alex would like to move the appointment that is currently booked for "
    "Monday morning at nine to some time next week, ideally on Tuesday or Wednesday."
)
GOODBYE = "No, thanks. Goodbye!"
VOICEMAIL_TEXT = r'(?is)(?:voicemail|message)\W.*?["“](?P<message>[^"”]+)["”]'


def _talk(number: str, name: str, ring: float) -> dict[str, object]:
    """A callee who waits for the greeting, answers twice; the agent ends with end_call."""
    return {
        "number": number,
        "name": name,
        "callee": {
            "ring": ring,
            "script": [
                {"listen": 8.0},
                {"say": "Hi. How can I help?"},
                {"listen": 8.0},
                {"say": "Sure. Anything else?"},
                {"listen": 8.0},
                {"hangup": True},
            ],
        },
        "agent": {
            "greeting": GREETING,
            "turns": [
                {"say": "Please move his visit to Tuesday."},
                {
                    "say": GOODBYE,
                    "tool": {"name": "end_call", "arguments": {"reason": "completed"}},
                },
            ],
        },
    }


SCENARIOS: list[dict[str, object]] = [
    {"number": "+14155550101", "name": "busy", "callee": {"behavior": "busy", "ring": 0}},
    {"number": "+14155550102", "name": "no-answer", "callee": {"behavior": "no_answer"}},
    {
        "number": "+14155550103",
        "name": "congestion",
        "callee": {"behavior": "congestion", "ring": 0},
    },
    {"number": "+14155550104", "name": "reject", "callee": {"behavior": "reject", "ring": 0.2}},
    {
        "number": "+14155550110",
        "name": "no-audiosocket",
        "callee": {"behavior": "noserver", "ring": 0.2},
    },
    _talk("+14155550200", "talk", 0.2),
    _talk("+14155550208", "talk-slow-ring", 1.5),
    {
        "number": "+14155550201",
        "name": "barge-in",
        "callee": {
            "ring": 0.2,
            "script": [
                {"listen": 8.0},
                {"say": "Hello, who is this?"},
                {"pause": 1.4},
                {"say": "Sorry, wait a second."},
                {"listen": 6.0},
                {"hangup": True},
            ],
        },
        "agent": {
            "greeting": GREETING,
            "turns": [{"say": LONG_REPLY}, {"say": "Of course, take your time."}],
        },
    },
    {
        "number": "+14155550202",
        "name": "hangs-up-mid-sentence",
        "callee": {
            "ring": 0.2,
            "script": [
                {"listen": 8.0},
                {"say": "I'm really busy right now, so whatever you are selling", "cut_after": 1.5},
                {"hangup": True},
            ],
        },
        "agent": {"greeting": GREETING, "turns": [{"say": "I'm sorry to bother you."}]},
    },
    {
        "number": "+14155550203",
        "name": "ivr",
        "callee": {
            "ring": 0.2,
            "script": [
                {"say": "For visits, press 1."},
                {"wait_dtmf": "1", "timeout": 10.0},
                {"say": "Visits. Hello?"},
                {"listen": 8.0},
                {"hangup": True},
            ],
        },
        "agent": {
            "greeting": {"say": "Hello."},
            "turns": [
                {"tool": {"name": "send_dtmf", "arguments": {"digits": "1"}}},
                {
                    "say": GOODBYE,
                    "tool": {"name": "end_call", "arguments": {"reason": "completed"}},
                },
            ],
        },
    },
    {
        "number": "+14155550204",
        "name": "presses-dtmf",
        "callee": {
            "ring": 0.2,
            "script": [{"listen": 8.0}, {"press": "12#"}, {"listen": 6.0}, {"hangup": True}],
        },
        "agent": {
            "greeting": GREETING,
            "turns": [
                {
                    "text": r"(?i)pressed\W+(?:the\s+)?(?:key\W+)?(?P<digits>[0-9*#]+)",
                    "say": "Got it.",
                    "repeat": True,
                }
            ],
        },
    },
    {
        "number": "+14155550205",
        "name": "needs-info",
        "callee": {
            "ring": 0.2,
            "script": [
                {"listen": 8.0},
                {"say": "What is the policy number?"},
                {"listen": 15.0},
                {"say": "Thanks, approved. Bye."},
                {"hangup": True},
            ],
        },
        "agent": {
            "greeting": GREETING,
            "turns": [
                {
                    "tool": {
                        "name": "request_user_info",
                        "arguments": {
                            "question": "What is the policy number?",
                            "timeout_seconds": 1.5,
                            "recipient_message": "One moment please, let me check.",
                        },
                    }
                },
                {"tool_output": "request_user_info", "say": "One moment please."},
                {"text": r'"(?P<answer>PN-[0-9]+)"', "say": "The policy number is {answer}."},
                {
                    "text": "did not arrive in time",
                    "say": "I will call you back. Goodbye!",
                    "tool": {"name": "end_call", "arguments": {"reason": "callback_requested"}},
                },
            ],
        },
    },
    {
        "number": "+14155550206",
        "name": "drop",
        "callee": {"ring": 0.2, "script": [{"listen": 8.0}, {"say": "Hello?"}, {"listen": 10.0}]},
        "agent": {"greeting": GREETING, "turns": [{"say": LONG_REPLY, "drop_after": 2}]},
    },
    {
        "number": "+14155550207",
        "name": "machine",
        "callee": {
            "ring": 0.2,
            "amd": {"status": "MACHINE", "cause": "MAXWORDS-3-2", "after": 0.3},
            "script": [
                {"say": "Hi, this is Sam. Leave a message."},
                {"beep": 0.4},
                {"listen": 10.0},
                {"hangup": True},
            ],
        },
        "agent": {
            "greeting": None,
            "turns": [
                {
                    "text": VOICEMAIL_TEXT,
                    "say": "{message}",
                    "tool": {"name": "end_call", "arguments": {"reason": "voicemail"}},
                }
            ],
        },
    },
    {
        "number": "+14155550209",
        "name": "long-listener",
        "callee": {"ring": 0.2, "script": [{"listen": 8.0}, {"say": "Hello?"}, {"listen": 30.0}]},
        "agent": {"greeting": GREETING, "turns": [{"say": "I'm calling about an appointment."}]},
    },
]

WORLD = World.model_validate(
    {
        "pbx": {"silence_hangup": 2.0, "context_rate": 24000, "connect_timeout": 1.0},
        "scenario": SCENARIOS,
    }
)


@dataclass
class RunningWorld:
    """The world's servers (simulated PBX + Realtime stand-in) on free loopback ports."""

    sim: SimulatedWorld

    @property
    def pbx(self) -> SimulatedPbx:
        """The simulated PBX (its per-call records: ``pbx.calls``)."""
        return self.sim.pbx

    @property
    def ami_port(self) -> int:
        """Where the PbxGateway logs in."""
        return self.sim.pbx.ami_port

    @property
    def realtime_url(self) -> str:
        """The stand-in's URL for the SDK's ``websocket_base_url``."""
        return self.sim.realtime_url

    async def stop(self) -> None:
        """Stop every server (calls still up are hung up)."""
        await self.sim.stop()


async def start_world(world: World, tmp: Path) -> RunningWorld:
    """Start the simulated PBX and the Realtime stand-in for one test."""
    sim = SimulatedWorld(
        host="127.0.0.1",
        ami_port=0,
        realtime_port=0,
        username=AMI_USER,
        secret=AMI_SECRET,
        world=world,
        speech_cache=SPEECH_CACHE,
    )
    await sim.start()
    return RunningWorld(sim)


SPEECH_CACHE = Path("/tmp/opendeep-e2e-speech")  # rendered lines, shared across tests and runs
DEFAULT_WORLD = load_world()
