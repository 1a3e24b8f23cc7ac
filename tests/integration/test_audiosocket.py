"""AudioSocket server over real TCP on loopback: one call, one connection, the rest dropped."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from asterisk.audiosocket import HANDSHAKE_TIMEOUT, AudioSocketServer
from asterisk.codec import (
    HANGUP_FRAME,
    Decoder,
    Frame,
    Kind,
    encode_audio,
    encode_dtmf,
    encode_uuid,
)

pytestmark = pytest.mark.integration

CALL_ID = uuid.UUID("6a1f0c4e-2b3d-4e5f-8a9b-0c1d2e3f4a5b")
LOGGER = "asterisk.audiosocket"
FAST_HANDSHAKE = 0.3


@pytest.fixture
async def server() -> AsyncIterator[AudioSocketServer]:
    srv = await AudioSocketServer.start(
        CALL_ID, bind_host="127.0.0.1", handshake_timeout=FAST_HANDSHAKE
    )
    yield srv
    await srv.close()


_writers: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every test client at the end, so no socket outlives its test."""
    yield
    while _writers:
        _writers.pop().close()
    await asyncio.sleep(0)


async def _connect(
    srv: AudioSocketServer, first: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*srv.address)
    _writers.append(writer)
    if first:
        writer.write(first)
        await writer.drain()
    return reader, writer


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF (a reset counts as the end: dropped clients are aborted)."""
    chunks = []
    async with asyncio.timeout(2.0):
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def _pcm(value: int, size: int = 320) -> bytes:
    return bytes([value]) * size


async def test_a_proper_client_exchanges_audio_both_ways(server: AudioSocketServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    inbound = b"".join(encode_audio(Kind.SLIN_8K, _pcm(i)) for i in (1, 2, 3))
    reader, writer = await _connect(server, encode_uuid(CALL_ID) + inbound + encode_dtmf("7"))
    conn = await server.wait_connected(timeout=2.0)
    assert server.connected and conn.audio_kind is Kind.SLIN_8K
    sock = writer.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    got = [await conn.recv() for _ in range(4)]
    assert got == [
        Frame(Kind.SLIN_8K, _pcm(1)),
        Frame(Kind.SLIN_8K, _pcm(2)),
        Frame(Kind.SLIN_8K, _pcm(3)),
        Frame(Kind.DTMF, b"7"),
    ]
    for i in (9, 8, 7):
        conn.send_audio(_pcm(i))
    expected = b"".join(encode_audio(Kind.SLIN_8K, _pcm(i)) for i in (9, 8, 7))
    assert await asyncio.wait_for(reader.readexactly(len(expected)), 2.0) == expected
    assert conn.frames_in == 4 and conn.frames_out == 3
    assert conn.stats.bytes_out == len(expected)
    with pytest.raises(ValueError, match="320 bytes per frame"):
        conn.send_audio(_pcm(1, 960))
    writer.close()
    assert await asyncio.wait_for(conn.recv(), 2.0) is None


async def test_owner_chooses_the_audio_kind_before_any_inbound_audio(
    server: AudioSocketServer,
) -> None:
    reader, _writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    assert conn.audio_kind is None
    with pytest.raises(RuntimeError, match="set_audio_kind"):
        conn.send_audio(_pcm(1))
    conn.set_audio_kind(Kind.SLIN_24K)
    conn.send_audio(_pcm(5, 960))
    assert await asyncio.wait_for(reader.readexactly(963), 2.0) == encode_audio(
        Kind.SLIN_24K, _pcm(5, 960)
    )


async def test_wrong_uuid_is_dropped_and_the_right_one_still_connects(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reader, _ = await _connect(server, encode_uuid(uuid.uuid4()))
        assert await _read_to_end(reader) == b""
    assert not server.connected and server.rejected == 1
    assert "dropped connection from 127.0.0.1: UUID is not this call's" in caplog.text
    _, _writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    assert not conn.closed


async def test_garbage_is_dropped_with_the_reason_but_never_the_payload(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reader, _ = await _connect(server, b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _read_to_end(reader) == b""
    assert "protocol error: unknown frame kind 0x47" in caplog.text
    assert "secret" not in caplog.text
    _, _writer = await _connect(server, encode_uuid(CALL_ID))
    assert (await server.wait_connected(timeout=2.0)).peer == "127.0.0.1"


async def test_64kb_frame_instead_of_the_uuid_is_dropped_from_its_header(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reader, _ = await _connect(server, b"\x10\xff\xff" + bytes(65535))
        assert await _read_to_end(reader) == b""
    assert "frame claims 65535 bytes, over the 8192 cap" in caplog.text
    assert not server.connected


async def test_64kb_frame_mid_call_closes_the_connection_with_a_clear_log(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        writer.write(encode_audio(Kind.SLIN_8K, _pcm(1)) + b"\x10\xff\xff" + bytes(65535))
        assert await asyncio.wait_for(conn.recv(), 2.0) == Frame(Kind.SLIN_8K, _pcm(1))
        assert await asyncio.wait_for(conn.recv(), 2.0) is None
        await asyncio.wait_for(conn.wait_closed(), 2.0)
    assert "protocol error from 127.0.0.1" in caplog.text and "over the 8192 cap" in caplog.text
    assert conn.end_reason is not None and conn.end_reason.startswith("protocol error")
    assert await _read_to_end(reader) == b""


async def test_half_closed_socket_reads_as_callee_gone_without_hanging(
    server: AudioSocketServer,
) -> None:
    reader, writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    conn.set_audio_kind(Kind.SLIN_8K)
    writer.write(encode_audio(Kind.SLIN_8K, _pcm(4)))
    writer.write_eof()  # the peer stops sending but keeps its read side open
    assert await asyncio.wait_for(conn.recv(), 2.0) == Frame(Kind.SLIN_8K, _pcm(4))
    assert await asyncio.wait_for(conn.recv(), 2.0) is None
    await asyncio.wait_for(conn.wait_closed(), 2.0)
    assert conn.end_reason == "peer closed the connection"
    conn.send_audio(_pcm(1))  # a pacer tick after the end is dropped and counted, not raised
    assert conn.stats.dropped_out == 1
    await asyncio.wait_for(conn.hangup(), 2.0)  # returns at once: already closed
    assert await _read_to_end(reader) == b""


async def test_a_second_connection_is_refused_while_the_first_goes_on(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader1, writer1 = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reader2, _ = await _connect(server, encode_uuid(CALL_ID))
        assert await _read_to_end(reader2) == b""
    assert "call already has its connection" in caplog.text
    assert server.connection is conn and server.rejected == 1
    writer1.write(encode_audio(Kind.SLIN_8K, _pcm(6)))
    assert await asyncio.wait_for(conn.recv(), 2.0) == Frame(Kind.SLIN_8K, _pcm(6))
    conn.send_audio(_pcm(2))
    assert await asyncio.wait_for(reader1.readexactly(323), 2.0) == encode_audio(
        Kind.SLIN_8K, _pcm(2)
    )


async def test_a_client_that_sends_nothing_is_dropped_after_the_handshake_timeout(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert HANDSHAKE_TIMEOUT == 2.0  # the default; this test runs with a short one
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loop = asyncio.get_running_loop()
        start = loop.time()
        silent, _w1 = await _connect(server)
        partial, _w2 = await _connect(server, encode_uuid(CALL_ID)[:10])
        assert await _read_to_end(silent) == b""
        assert await _read_to_end(partial) == b""
        assert FAST_HANDSHAKE * 0.9 <= loop.time() - start < FAST_HANDSHAKE + 1.0
    assert caplog.text.count(f"no UUID within {FAST_HANDSHAKE:g} s") == 2
    assert not server.connected


async def test_our_hangup_sends_exactly_the_hangup_frame_after_queued_audio_then_closes(
    server: AudioSocketServer,
) -> None:
    reader, _writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    conn.set_audio_kind(Kind.SLIN_8K)
    conn.send_audio(_pcm(1))
    conn.send_audio(_pcm(2))
    await asyncio.wait_for(conn.hangup(), 2.0)
    assert conn.closed and conn.end_reason == "we hung up"
    wire = await _read_to_end(reader)
    assert wire == encode_audio(Kind.SLIN_8K, _pcm(1)) + encode_audio(Kind.SLIN_8K, _pcm(2)) + (
        HANGUP_FRAME
    )
    assert wire.endswith(b"\x00\x00\x00")
    assert await asyncio.wait_for(conn.recv(), 1.0) is None


async def test_a_disallowed_peer_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    srv = await AudioSocketServer.start(CALL_ID, bind_host="127.0.0.1", allowed_peers={"10.9.9.9"})
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            reader, _ = await _connect(srv, encode_uuid(CALL_ID))
            assert await _read_to_end(reader) == b""
        assert "dropped connection from 127.0.0.1: peer not allowed" in caplog.text
        with pytest.raises(TimeoutError):
            await srv.wait_connected(timeout=0.1)
    finally:
        await srv.close()


async def test_allowed_peers_accept_networks_and_host_names() -> None:
    for peers in ({"127.0.0.0/8"}, {"localhost", "10.9.9.9"}):
        srv = await AudioSocketServer.start(CALL_ID, bind_host="127.0.0.1", allowed_peers=peers)
        try:
            _, _writer = await _connect(srv, encode_uuid(CALL_ID))
            await srv.wait_connected(timeout=2.0)
        finally:
            await srv.close()


async def test_wait_connected_times_out_and_close_wakes_waiters(
    server: AudioSocketServer,
) -> None:
    with pytest.raises(TimeoutError):
        await server.wait_connected(timeout=0.05)
    waiter = asyncio.create_task(server.wait_connected(timeout=5.0))
    await asyncio.sleep(0)
    await server.close()
    with pytest.raises(ConnectionError, match="closed before Asterisk connected"):
        await waiter


async def test_close_ends_the_connection_and_the_peer_sees_eof(server: AudioSocketServer) -> None:
    reader, _writer = await _connect(server, encode_uuid(CALL_ID))
    conn = await server.wait_connected(timeout=2.0)
    await asyncio.wait_for(server.close(), 2.0)
    assert conn.closed and await conn.recv() is None
    assert await _read_to_end(reader) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection(*server.address)


async def test_wildcard_bind_needs_an_advertised_host() -> None:
    with pytest.raises(ValueError, match="advertise_host"):
        await AudioSocketServer.start(CALL_ID, bind_host="0.0.0.0")
    srv = await AudioSocketServer.start(CALL_ID, bind_host="0.0.0.0", advertise_host="10.1.2.3")
    try:
        assert srv.address[0] == "10.1.2.3"
        _, writer = await asyncio.open_connection("127.0.0.1", srv.address[1])
        _writers.append(writer)
        writer.write(encode_uuid(CALL_ID))
        await srv.wait_connected(timeout=2.0)
    finally:
        await srv.close()


async def test_frames_sent_by_a_pbx_in_one_write_with_the_uuid_are_not_lost(
    server: AudioSocketServer,
) -> None:
    frames = [encode_audio(Kind.SLIN_8K, _pcm(i)) for i in range(20)]
    _, writer = await _connect(server, encode_uuid(CALL_ID) + b"".join(frames))
    conn = await server.wait_connected(timeout=2.0)
    writer.close()
    got = []
    while (frame := await asyncio.wait_for(conn.recv(), 2.0)) is not None:
        got.append(frame)
    decoded = Decoder(expect_uuid_first=False).feed(b"".join(frames))
    assert got == decoded
