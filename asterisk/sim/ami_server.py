"""The simulated PBX's AMI server: banner, Login, Ping, Logoff, events; calls are delegated.

Speaks AMI like Asterisk 22: the ``Asterisk Call Manager/11.0.0`` banner line on connect,
``Response: Success / Message: Authentication accepted`` then a ``FullyBooted`` event on login,
``Response: Error / Message: Authentication failed`` (and the socket closed) on bad credentials,
``Permission denied`` before login, ``Ping: Pong`` to Ping, ``Goodbye`` to Logoff and
``Invalid/unknown command`` for anything else. Originate, Hangup and PlayDTMF go to the PBX.

Test hooks: :meth:`AmiServer.restart` drops every connection and listens again on the same port;
:meth:`AmiServer.freeze` makes current connections half-open (no reading, no writing, no close).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asterisk.sim.capture import wire_fields
from asterisk.sim.channels import Fields, fully_booted

__all__ = ["BANNER", "AmiAction", "AmiServer", "AmiSession"]

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_MAX_MESSAGE = 64 * 1024
_STOP_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class AmiAction:
    """One action as received: headers in order (``Variable`` may repeat)."""

    fields: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, data: bytes) -> AmiAction:
        """Parse one ``\\r\\n\\r\\n``-terminated message."""
        fields = []
        for line in data.decode("utf-8", "replace").split("\r\n"):
            if not line.strip():
                continue
            key, _, value = line.partition(":")
            fields.append((key.strip(), value[1:] if value.startswith(" ") else value))
        return cls(tuple(fields))

    def get(self, name: str) -> str | None:
        """First value of a header (case-insensitive), or None."""
        lowered = name.lower()
        return next((v for k, v in self.fields if k.lower() == lowered), None)

    def get_all(self, name: str) -> list[str]:
        """Every value of a repeated header."""
        lowered = name.lower()
        return [v for k, v in self.fields if k.lower() == lowered]

    @property
    def name(self) -> str:
        """The action's name (``Originate``)."""
        return (self.get("Action") or "").strip()


def reply(action: AmiAction, response: str, message: str | None = None, **extra: str) -> Fields:
    """A response in Asterisk's header order: Response, ActionID, Message, then extras."""
    fields: Fields = [("Response", response)]
    action_id = action.get("ActionID")
    if action_id is not None:
        fields.append(("ActionID", action_id))
    if message is not None:
        fields.append(("Message", message))
    fields += list(extra.items())
    return fields


ActionHandler = Callable[["AmiSession", AmiAction], Fields | None]


class AmiSession:
    """One AMI client connection: a reader loop and a single writer task."""

    def __init__(
        self, server: AmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.authenticated = False
        self.events_on = True
        self.frozen = False
        self.peer = str(writer.get_extra_info("peername"))

    def send(self, fields: Fields) -> None:
        """Queue one message for the writer task (dropped while frozen)."""
        if not self.frozen:
            self._out.put_nowait(wire_fields(fields))

    def send_event(self, fields: Fields) -> None:
        """Queue an event if this session is logged in and wants events."""
        if self.authenticated and self.events_on:
            self.send(fields)

    def close_after_flush(self) -> None:
        """Close once everything queued so far is written."""
        self._out.put_nowait(None)

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()

    def freeze(self) -> None:
        """Become half-open: stop reading and writing, keep the socket."""
        self.frozen = True
        self._writer.transport.pause_reading()  # type: ignore[attr-defined]

    async def run(self) -> None:
        """Serve the connection until EOF, Logoff, or abort."""
        writer_task = asyncio.create_task(self._write_loop(), name=f"sim-ami-writer-{self.peer}")
        try:
            self._out.put_nowait(BANNER)
            await self._read_loop()
        finally:
            self._out.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer_task), _STOP_TIMEOUT)
            writer_task.cancel()
            self.abort()

    async def _write_loop(self) -> None:
        while True:
            data = await self._out.get()
            if data is None:
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(self._writer.drain(), _STOP_TIMEOUT)
                self._writer.close()
                return
            if self.frozen:
                continue
            self._writer.write(data)
            try:
                await asyncio.wait_for(self._writer.drain(), _STOP_TIMEOUT)
            except (ConnectionError, TimeoutError) as exc:
                log.info("AMI session %s: write failed (%s); closing", self.peer, exc)
                self.abort()
                return

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # EOF
            except asyncio.LimitOverrunError:
                log.warning(
                    "AMI session %s: message over %d bytes; closing", self.peer, _MAX_MESSAGE
                )
                return
            except ConnectionError:
                return
            action = AmiAction.parse(data)
            response = self._server.handle(self, action)
            if response is not None:
                self.send(response)
            if action.name.lower() == "logoff" or (
                action.name.lower() == "login" and not self.authenticated
            ):
                self.close_after_flush()
                return


class AmiServer:
    """Listens for AMI clients on (host, port); port 0 picks a free port once and keeps it."""

    def __init__(
        self, *, host: str, port: int, username: str, secret: str, on_action: ActionHandler
    ) -> None:
        self.host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._on_action = on_action
        self._server: asyncio.Server | None = None
        self.sessions: set[AmiSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.started_at = time.time()

    @property
    def port(self) -> int:
        """The listening port (known after :meth:`start`)."""
        return self._port

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(
            self._accept, self.host, self._port, limit=_MAX_MESSAGE
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("simulated AMI listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.abort()
        tasks = list(self._tasks)
        if tasks:  # aborted sessions end on their own; cancelling them upsets asyncio.streams
            _, stuck = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _STOP_TIMEOUT)
            self._server = None

    async def restart(self) -> None:
        """Drop all connections and listen again on the same port (an Asterisk restart)."""
        await self.stop()
        await self.start()

    def freeze(self) -> None:
        """Make every current connection half-open; new connections work normally."""
        for session in self.sessions:
            session.freeze()

    def broadcast(self, fields: Fields) -> None:
        """Send an event to every logged-in session."""
        for session in self.sessions:
            session.send_event(fields)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AmiSession(self, reader, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    def handle(self, session: AmiSession, action: AmiAction) -> Fields | None:
        """Answer one action (never logs header values: Login carries the secret)."""
        name = action.name.lower()
        if name == "login":
            return self._login(session, action)
        if name == "logoff":
            return reply(action, "Goodbye", "Thanks for all the fish.")
        if not session.authenticated:
            return reply(action, "Error", "Permission denied")
        if name == "ping":
            return reply(action, "Success", None, Ping="Pong", Timestamp=f"{time.time():.6f}")
        if name in ("originate", "hangup", "playdtmf"):
            return self._on_action(session, action)
        log.info("AMI action %r is not simulated", action.name)
        return reply(action, "Error", "Invalid/unknown command")

    def _login(self, session: AmiSession, action: AmiAction) -> Fields | None:
        user_ok = hmac.compare_digest(
            (action.get("Username") or "").encode(), self._username.encode()
        )
        secret_ok = hmac.compare_digest(
            (action.get("Secret") or "").encode(), self._secret.encode()
        )
        if not (user_ok and secret_ok):
            log.info("AMI login refused for %s", session.peer)
            return reply(action, "Error", "Authentication failed")
        session.authenticated = True
        session.events_on = (action.get("Events") or "on").strip().lower() not in ("off", "no")
        session.send(reply(action, "Success", "Authentication accepted"))
        session.send_event(fully_booted())
        return None
