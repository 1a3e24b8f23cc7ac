"""AudioSocket listener and connection: the TCP server a CallActor owns (Asterisk connects to us).

One server per call, opened before the Originate. It accepts exactly one connection: from an
allowed peer, whose first frame is the call's UUID, within the handshake timeout. Anything else is
logged (peer and reason, never payload) and dropped without touching the call.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import uuid
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from asterisk.codec import (
    DTMF_DIGITS,
    HANGUP_FRAME,
    AudioSocketProtocolError,
    Decoder,
    Frame,
    Kind,
    encode_audio,
    frame_bytes,
    is_audio,
)

__all__ = ["AudioSocketConnection", "AudioSocketServer", "ConnectionStats"]

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 2.0  # s for a client to send its UUID (Asterisk sends it at once)
CLOSE_TIMEOUT = 2.0  # s for our hangup frame to drain before the socket is aborted
OUTBOX_LIMIT = 50  # frames (1 s): past this the peer is not reading and frames are dropped
INBOX_LIMIT = 500  # frames (10 s at 20 ms): past this the oldest unread inbound frames go
READ_SIZE = 65536

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(slots=True)
class ConnectionStats:
    """Per-connection counters."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_in: int = 0  # inbound frames discarded because nobody read them in time
    dropped_out: int = 0  # outbound frames refused: connection closing or peer not reading


def _host(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _address(host: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(entry: str) -> _Network | None:
    """An IP or CIDR entry as a network; None for anything else (a host name)."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


class AudioSocketConnection:
    """One accepted AudioSocket call leg: a reader task, a writer task, and nothing else writes."""

    def __init__(
        self,
        call_id: uuid.UUID,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        decoder: Decoder,
        peer: str,
        pending: list[Frame],
    ) -> None:
        self.call_id = call_id
        self.peer = peer
        self.stats = ConnectionStats()
        self.end_reason: str | None = None
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._audio_kind: Kind | None = None
        self._frame_size = 0
        self._kind_mismatch_logged = False
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: close after this
        self._inbox: deque[Frame] = deque()
        self._inbox_ready = asyncio.Event()
        self._eof = False
        self._closing = False
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        for frame in pending:
            self._accept(frame)

    @property
    def audio_kind(self) -> Kind | None:
        """The audio kind we send (the owner's choice, else the peer's first audio frame)."""
        return self._audio_kind

    @property
    def frames_in(self) -> int:
        """Frames received after the UUID."""
        return self.stats.frames_in

    @property
    def frames_out(self) -> int:
        """Frames written to the socket."""
        return self.stats.frames_out

    @property
    def closed(self) -> bool:
        """True once the connection has fully closed."""
        return self._closed.is_set()

    def set_audio_kind(self, kind: Kind) -> None:
        """Choose the audio kind we send (known from the Originate form before any audio)."""
        if not is_audio(kind):
            raise ValueError(f"{Kind(kind).name} is not an audio kind")
        self._audio_kind = Kind(kind)
        self._frame_size = frame_bytes(self._audio_kind)

    def send_audio(self, pcm: bytes) -> None:
        """Queue exactly one 20 ms frame of the current kind; never blocks."""
        if self._audio_kind is None:
            raise RuntimeError("audio kind unknown: call set_audio_kind first")
        if len(pcm) != self._frame_size:
            raise ValueError(f"expected {self._frame_size} bytes per frame, got {len(pcm)}")
        if self._closing:
            self.stats.dropped_out += 1  # the pacer may tick once more before its owner stops it
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            if not self.stats.dropped_out:
                logger.warning(
                    "AudioSocket %s: peer %s is not reading; dropping frames",
                    self.call_id,
                    self.peer,
                )
            self.stats.dropped_out += 1
            return
        self._outbox.put_nowait(encode_audio(self._audio_kind, pcm))

    async def recv(self) -> Frame | None:
        """The next audio or DTMF frame; None once the peer is gone (callee hung up)."""
        while not self._inbox:
            if self._eof:
                return None
            self._inbox_ready.clear()
            await self._inbox_ready.wait()
        return self._inbox.popleft()

    async def hangup(self) -> None:
        """Send `00 00 00` after the frames already queued, then close."""
        if not self._closing:
            self._closing = True
            self._outbox.put_nowait(HANGUP_FRAME)
            self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._closed.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "AudioSocket %s: hangup to %s not drained in %.1f s; aborting",
                self.call_id,
                self.peer,
                CLOSE_TIMEOUT,
            )
            await self.close()

    async def wait_closed(self) -> None:
        """Return once the connection is fully closed."""
        await self._closed.wait()

    async def close(self) -> None:
        """Close at once (pending outbound frames are discarded) and wait for our tasks."""
        self._finish("closed by owner", abort=True)
        await self._wait_tasks()

    def _start(self) -> None:
        if self._eof:  # the handshake read already carried the end (a hangup frame)
            self._writer.transport.abort()
            self._closed.set()
            return
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            # asyncio sets it already on TCP; explicit because Nagle would batch our 20 ms frames.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for coro, name in ((self._read_loop(), "reader"), (self._write_loop(), "writer")):
            task = asyncio.get_running_loop().create_task(coro, name=f"audiosocket-{name}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("AudioSocket %s: %s failed", self.call_id, task.get_name(), exc_info=exc)
            self._finish(f"internal error in {task.get_name()}", abort=True)
        if not self._tasks:
            self._closed.set()

    async def _wait_tasks(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        self._closed.set()

    def _finish(self, reason: str, *, abort: bool) -> None:
        """Stop both directions once; the first reason is the one remembered."""
        if self.end_reason is None:
            self.end_reason = reason
            logger.info(
                "AudioSocket %s: connection from %s ended: %s", self.call_id, self.peer, reason
            )
        self._closing = True
        self._eof = True
        self._inbox_ready.set()
        if abort:
            self._writer.transport.abort()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def _accept(self, frame: Frame) -> None:
        """Route one inbound frame: audio and DTMF to the inbox, the rest logged."""
        self.stats.frames_in += 1
        self.stats.bytes_in += len(frame.payload) + 3
        kind = frame.kind
        if is_audio(kind):
            if self._audio_kind is None:
                self.set_audio_kind(kind)
            elif kind is not self._audio_kind and not self._kind_mismatch_logged:
                self._kind_mismatch_logged = True
                logger.warning(
                    "AudioSocket %s: peer sends %s while we send %s",
                    self.call_id,
                    kind.name,
                    self._audio_kind.name,
                )
        elif kind is Kind.DTMF:
            if len(frame.payload) != 1 or frame.payload[0] not in DTMF_DIGITS:
                logger.warning("AudioSocket %s: ignored a malformed DTMF frame", self.call_id)
                return
        elif kind is Kind.HANGUP:
            self._finish("peer sent hangup", abort=True)
            return
        else:
            logger.warning("AudioSocket %s: ignored a %s frame", self.call_id, kind.name)
            return
        if len(self._inbox) >= INBOX_LIMIT:
            self._inbox.popleft()
            self.stats.dropped_in += 1
        self._inbox.append(frame)
        self._inbox_ready.set()

    async def _read_loop(self) -> None:
        try:
            while not self._eof:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    # Asterisk never sends a hangup frame: EOF is how the callee's hangup looks.
                    self._finish("peer closed the connection", abort=True)
                    return
                for frame in self._decoder.feed(data):
                    self._accept(frame)
        except AudioSocketProtocolError as exc:
            for frame in exc.frames:
                self._accept(frame)
            logger.warning(
                "AudioSocket %s: protocol error from %s: %s", self.call_id, self.peer, exc
            )
            self._finish(f"protocol error: {exc}", abort=True)
        except OSError as exc:
            self._finish(f"read failed: {exc.__class__.__name__}", abort=True)

    async def _write_loop(self) -> None:
        writer = self._writer
        try:
            while True:
                frame = await self._outbox.get()
                if frame is None:
                    break
                writer.write(frame)  # one buffer per frame: a frame is never split across writes
                self.stats.frames_out += 1
                self.stats.bytes_out += len(frame)
                await writer.drain()
            # Finish first so the reader, which will see EOF once we close, cannot claim the end.
            self._finish("we hung up", abort=False)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        except TimeoutError:
            self._finish("we hung up (close timed out)", abort=True)
        except OSError as exc:
            self._finish(f"write failed: {exc.__class__.__name__}", abort=True)


class AudioSocketServer:
    """The per-call listener; use `await AudioSocketServer.start(...)`."""

    def __init__(
        self,
        call_id: uuid.UUID,
        *,
        allowed: list[_Network] | None,
        max_payload: int,
        handshake_timeout: float,
    ) -> None:
        self.call_id = call_id
        self.address: tuple[str, int] = ("", 0)
        """(advertised host, bound port): what goes into the Originate."""
        self._allowed = allowed
        self._max_payload = max_payload
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._connection: AudioSocketConnection | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._clients: set[asyncio.Task[object]] = set()
        self.rejected = 0
        """Connections dropped (wrong UUID, garbage, disallowed peer, second connection, silent)."""

    @classmethod
    async def start(
        cls,
        call_id: uuid.UUID,
        *,
        bind_host: str,
        port: int = 0,
        advertise_host: str | None = None,
        allowed_peers: Collection[str] | None = None,
        max_payload: int = 8192,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> AudioSocketServer:
        """Listen for the call's one AudioSocket connection (port 0: an ephemeral port)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        host = str(infos[0][4][0])  # one address, so port 0 cannot yield two different ports
        if advertise_host is None:
            unspecified = _address(host)
            if unspecified is not None and unspecified.is_unspecified:
                raise ValueError(f"bind_host {bind_host!r} is a wildcard: give advertise_host")
            advertise_host = bind_host
        allowed = None if allowed_peers is None else await _resolve_peers(allowed_peers)
        self = cls(
            call_id, allowed=allowed, max_payload=max_payload, handshake_timeout=handshake_timeout
        )
        self._server = await asyncio.start_server(self._on_client, host=host, port=port)
        self.address = (advertise_host, int(self._server.sockets[0].getsockname()[1]))
        return self

    @property
    def connected(self) -> bool:
        """True once Asterisk's connection was accepted (stays True after it ends)."""
        return self._connection is not None

    @property
    def connection(self) -> AudioSocketConnection | None:
        """The accepted connection, if any."""
        return self._connection

    async def wait_connected(self, timeout: float) -> AudioSocketConnection:  # noqa: ASYNC109
        """The accepted connection; TimeoutError if none within `timeout` seconds."""

        if self._connection is None and not self._closed:
            await asyncio.wait_for(self._connected.wait(), timeout)
        if self._connection is None:
            raise ConnectionError("AudioSocket server closed before Asterisk connected")
        return self._connection

    async def close(self) -> None:
        """Stop listening, drop handshakes in progress, close the connection."""
        self._closed = True
        self._connected.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients))
        if self._connection is not None:
            await self._connection.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _drop(self, writer: asyncio.StreamWriter, peer: str, reason: str) -> None:
        self.rejected += 1
        logger.warning("AudioSocket %s: dropped connection from %s: %s", self.call_id, peer, reason)
        writer.transport.abort()

    def _peer_allowed(self, host: str) -> bool:
        if self._allowed is None:
            return True
        address = _address(host)
        return address is not None and any(address in net for net in self._allowed)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)  # tracked so close() can stop a handshake in progress
        try:
            await self._handshake(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            if task is not None:
                self._clients.discard(task)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _host(writer.get_extra_info("peername"))
        if not self._peer_allowed(peer):
            self._drop(writer, peer, "peer not allowed")
            return
        decoder = Decoder(max_payload=self._max_payload)
        outcome: list[Frame] | str = "call already has its connection"
        if self._connection is None and not self._closed:
            outcome = await self._read_uuid(reader, decoder)
        # Checked again after the read: another client may have completed its handshake meanwhile.
        if isinstance(outcome, list) and (self._connection is not None or self._closed):
            outcome = "call already has its connection"
        if isinstance(outcome, str):
            self._drop(writer, peer, outcome)
            return
        connection = AudioSocketConnection(
            self.call_id, reader, writer, decoder=decoder, peer=peer, pending=outcome[1:]
        )
        self._connection = connection
        connection._start()
        self._connected.set()
        logger.info("AudioSocket %s: connected from %s", self.call_id, peer)

    async def _read_uuid(self, reader: asyncio.StreamReader, decoder: Decoder) -> list[Frame] | str:
        """The first frames (a UUID frame of this call first), or why the client is refused."""
        try:
            frames = await asyncio.wait_for(_read_first(reader, decoder), self._handshake_timeout)
        except TimeoutError:
            return f"no UUID within {self._handshake_timeout:g} s"
        except AudioSocketProtocolError as exc:
            return f"protocol error: {exc}"
        except OSError as exc:
            return f"read failed: {exc.__class__.__name__}"
        if not frames:
            return "closed before sending a UUID"
        if uuid.UUID(bytes=frames[0].payload) != self.call_id:
            return "UUID is not this call's"
        return frames


async def _read_first(reader: asyncio.StreamReader, decoder: Decoder) -> list[Frame]:
    """Read until the decoder yields frames (the first is the UUID); [] on EOF."""
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            return []
        frames = decoder.feed(data)
        if frames:
            return frames


async def _resolve_peers(peers: Collection[str]) -> list[_Network]:
    """Allowed peers as networks: IPs, CIDR blocks, or host names resolved once, now."""
    loop = asyncio.get_running_loop()
    networks: list[_Network] = []
    for entry in peers:
        network = _network(entry)
        if network is not None:
            networks.append(network)
            continue
        try:
            infos = await loop.getaddrinfo(entry, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"allowed AudioSocket peer {entry!r} does not resolve") from exc
        for info in infos:
            address = _address(str(info[4][0]))
            if address is not None:
                networks.append(ipaddress.ip_network(address))
    return networks
