"""AMI events as Asterisk 22 writes them: channel snapshots, field names and field order.

Every builder returns the message's headers in wire order; the shapes follow the captures in
``tests/fixtures/ami/`` (see their README). A simulated call is a Local channel pair: ``;1`` is
the originated leg (``Uniqueid`` = ``ChannelId``), ``;2`` the callee's (``<ChannelId>-2``), both
with ``Linkedid`` = ``ChannelId``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = [
    "CAUSE_TEXT",
    "Fields",
    "Leg",
    "channel_event",
    "dial_event",
    "hangup_event",
    "originate_response",
]

Fields = list[tuple[str, str]]

STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}
UNKNOWN = "<unknown>"


def _timestamp() -> str:
    return f"{time.time():.6f}"


@dataclass(slots=True)
class Leg:
    """One channel's snapshot, updated as the call progresses."""

    name: str
    uniqueid: str
    linkedid: str
    state: int
    context: str
    exten: str = "s"
    priority: int = 1
    cid_num: str = UNKNOWN
    cid_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN

    def snapshot(self, prefix: str = "") -> Fields:
        """The standard channel block (``Channel`` … ``Linkedid``), optionally ``Dest``-prefixed."""
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(self.state)),
            (f"{prefix}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{prefix}CallerIDNum", self.cid_num),
            (f"{prefix}CallerIDName", self.cid_name),
            (f"{prefix}ConnectedLineNum", self.connected_num),
            (f"{prefix}ConnectedLineName", self.connected_name),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


_PRIVILEGE = {
    "VarSet": "dialplan,all",
    "DTMFBegin": "dtmf,all",
    "DTMFEnd": "dtmf,all",
    "UserEvent": "user,all",
    "FullyBooted": "system,all",
}


def channel_event(name: str, leg: Leg, extra: Fields | None = None) -> Fields:
    """``Event``, ``Privilege``, ``Timestamp``, the leg's snapshot, then event-specific headers."""
    head = [
        ("Event", name),
        ("Privilege", _PRIVILEGE.get(name, "call,all")),
        ("Timestamp", _timestamp()),
    ]
    return head + leg.snapshot() + (extra or [])


def dial_event(name: str, dest: Leg, extra: Fields) -> Fields:
    """DialBegin/DialState/DialEnd: only ``Dest*`` fields (an Originate has no caller channel)."""
    head = [("Event", name), ("Privilege", "call,all"), ("Timestamp", _timestamp())]
    return head + dest.snapshot("Dest") + extra


def hangup_event(leg: Leg, cause: int) -> Fields:
    """``Hangup`` with ``Cause`` and ``Cause-txt``."""
    text = CAUSE_TEXT.get(cause, "Unknown")
    return channel_event("Hangup", leg, [("Cause", str(cause)), ("Cause-txt", text)])


@dataclass(slots=True, frozen=True)
class OriginateTarget:
    """What the Originate asked to run once answered: an application or a dialplan location."""

    application: str | None
    data: str
    context: str
    exten: str


def originate_response(
    *,
    action_id: str,
    success: bool,
    channel: str,
    target: OriginateTarget,
    reason: int,
    uniqueid: str,
    cid_num: str,
    cid_name: str,
) -> Fields:
    """``OriginateResponse`` (on failure ``channel`` is the requested dial string, not a leg)."""
    fields: Fields = [
        ("Event", "OriginateResponse"),
        ("Privilege", "call,all"),
        ("Timestamp", _timestamp()),
    ]
    if action_id:
        fields.append(("ActionID", action_id))
    fields += [("Response", "Success" if success else "Failure"), ("Channel", channel)]
    if target.application is not None:
        fields += [("Application", target.application), ("Data", target.data)]
    else:
        fields += [("Context", target.context), ("Exten", target.exten)]
    fields += [
        ("Reason", str(reason)),
        ("Uniqueid", uniqueid),
        ("CallerIDNum", cid_num),
        ("CallerIDName", cid_name),
    ]
    return fields


def fully_booted() -> Fields:
    """The event Asterisk sends after a successful login."""
    return [
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", "3600"),
        ("LastReload", "3600"),
        ("Status", "Fully Booted"),
    ]
