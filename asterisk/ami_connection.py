"""One AMI TCP connection on panoramisk 1.4, with its action queue bypassed.

panoramisk parses the stream (banner, ``\\r\\n\\r\\n``-framed messages) and serializes actions;
we keep its parser and event dispatch and replace three behaviours that are wrong for us:

- it re-sends every action that had no reply when the connection dropped, on the next
  ``FullyBooted`` — for an Originate that dials the callee twice. Here every action's reply is
  matched in our own table (:attr:`AmiConnection.pending`), never in panoramisk's, and a dropped
  connection FAILS every pending action with :class:`AmiConnectionLostError`; nothing is ever
  re-sent.
- an async Originate's future resolves only at answer and swallows ``OriginateResponse``; here the
  "successfully queued" reply resolves it and ``OriginateResponse`` is an event like any other.
- it reconnects on a fixed timer and pings without checking the answer; here the connection just
  reports its loss and :class:`asterisk.ami.AmiClient` decides (backoff, liveness).

The Login action (which carries the secret) is written straight to the socket and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk import actions as pk_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from asterisk.ami_results import (
    AmiAuthenticationError,
    AmiConnectionLostError,
    AmiNotConnectedError,
)

__all__ = ["ActionFields", "AmiConnection"]

log = logging.getLogger(__name__)

ActionFields = Mapping[str, str | list[str]]


class _Protocol(AMIProtocol):  # type: ignore[misc]  # panoramisk ships no type hints
    """panoramisk's protocol; replies go to our table, a close fails them (never re-queues)."""

    closed: bool
    transport: asyncio.Transport

    def __init__(self, owner: AmiConnection) -> None:
        super().__init__()
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # What panoramisk's Manager.connection_made sets, minus its auto-login and its pinger;
        # set here so that no byte can arrive before the protocol knows its owner.
        self.factory = self._owner.manager
        self.log = log
        self.config = self._owner.manager.config
        self.encoding = self._owner.manager.config["encoding"]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def handle_message(self, message: Message) -> None:
        if "event" in message:
            super().handle_message(message)  # events (and Shutdown) go to Manager.dispatch
            return
        self._owner.resolve(message)

    def close(self) -> None:
        self._owner.fail_pending()
        if not self.closed:
            self.closed = True
            self.transport.close()  # asyncio then calls connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        # Also reached from a ``Shutdown`` event. Never via panoramisk's Manager: it reconnects.
        self.close()
        self._owner.lost(exc)


class _Manager(Manager):  # type: ignore[misc]  # panoramisk ships no type hints
    """panoramisk's Manager used for its config and event dispatch only; it never reconnects."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host=host, port=port, events="on", forgetable_actions=())
        # panoramisk re-sends unanswered actions on FullyBooted (double dial!) from a task it
        # does not track; nothing of ours is ever in its queue, and the hook is removed.
        self.callbacks["FullyBooted"].remove(self.send_awaiting_actions)

    async def send_awaiting_actions(self, *_: object) -> None:
        """Never re-send anything (see the module docstring); unregistered in __init__."""
        if self.awaiting_actions:
            log.error("dropping %d actions queued for re-sending", len(self.awaiting_actions))
            self.awaiting_actions.clear()


class AmiConnection:
    """A single AMI socket: open, login, send actions, get events; no reconnect logic."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        on_event: Callable[[Message], None],
        on_lost: Callable[[AmiConnection, object], None],
    ) -> None:
        self.host = host
        self.port = port
        self.manager = _Manager(host, port)
        self.manager.register_event("*", lambda _mgr, event: self._dispatch(event))
        self._on_event = on_event
        self._on_lost = on_lost
        self._protocol: _Protocol | None = None
        self.pending: dict[str, asyncio.Future[Message]] = {}
        self._closed = False
        self.fully_booted = asyncio.Event()

    def _dispatch(self, event: Message) -> None:
        if event.get("Event") == "FullyBooted":
            self.fully_booted.set()
        self._on_event(event)

    @property
    def is_open(self) -> bool:
        """True while the socket is up."""
        return self._protocol is not None and not self._protocol.closed and not self._closed

    async def open(self, within: float) -> None:
        """Connect the TCP socket (within ``within`` seconds)."""
        loop = asyncio.get_running_loop()
        self.manager.loop = loop
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port), within
        )
        self._protocol = protocol
        self.manager.protocol = protocol
        self.manager._connected = True

    async def login(self, username: str, secret: str, within: float) -> None:
        """Log in; raise :class:`AmiAuthenticationError` (without the secret) when refused."""
        fields = {"Action": "Login", "Username": username, "Secret": secret, "Events": "on"}
        reply = await asyncio.wait_for(self.send(fields), within)
        if reply.get("Response") != "Success":
            message = str(reply.get("Message") or "refused")
            raise AmiAuthenticationError(
                f"AMI login as {username!r} on {self.host}:{self.port} failed: {message}"
            )

    def send(self, fields: ActionFields) -> asyncio.Future[Message]:
        """Write one action; the future gets Asterisk's reply (or AmiConnectionLostError)."""
        if not self.is_open or self._protocol is None:
            raise AmiNotConnectedError(f"no AMI connection to {self.host}:{self.port}")
        action = pk_actions.Action(dict(fields))
        action_id = str(action.action_id)
        if action_id in self.pending:
            raise ValueError(f"ActionID {action_id} is already waiting for a reply")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.pending[action_id] = future
        self._protocol.transport.write(str(action).encode(self.manager.config["encoding"]))
        return future

    def resolve(self, message: Message) -> None:
        """Hand a reply to the action waiting for it."""
        action_id = str(message.get("ActionID") or "")
        future = self.pending.pop(action_id, None)
        if future is None:
            log.debug("AMI reply for an action nobody waits for (ActionID %r)", action_id)
        elif not future.done():
            future.set_result(message)

    def fail_pending(self) -> None:
        """Fail every action still waiting for a reply: the connection is gone."""
        pending, self.pending = self.pending, {}
        for action_id, future in pending.items():
            if not future.done():
                future.set_exception(
                    AmiConnectionLostError(f"AMI connection lost before the reply to {action_id}")
                )
                future.exception()  # mark retrieved: the waiter may already have given up

    def lost(self, exc: object) -> None:
        """Called by the protocol when the socket closed, for whatever reason."""
        self.fail_pending()
        if self._closed:
            return
        self._closed = True
        self._on_lost(self, exc)

    def abort(self) -> None:
        """Drop the socket at once (half-open detection); loss is reported as usual."""
        if self._protocol is not None and not self._protocol.closed:
            self._protocol.transport.abort()

    def close(self) -> None:
        """Close the socket on our initiative; reported through ``on_lost`` like any loss."""
        if self._protocol is not None:
            self._protocol.close()

    def describe(self) -> dict[str, Any]:
        """Host, port and state, safe to log."""
        return {
            "host": self.host,
            "port": self.port,
            "open": self.is_open,
            "pending": len(self.pending),
        }
