"""The stream anyprobe.net.open_connection and ctx.connect() give: bytes over a
non-blocking socket, anyio's errors, closing, waiting, yielding."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from anyprobe._socket_stream import YIELD_EVERY, RawSocketStream
from anyprobe.net import open_connection

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handler`` for each connection; its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def close_at_once(stream: anyio.abc.SocketStream) -> None:
    await stream.aclose()


async def reset_at_once(stream: anyio.abc.SocketStream) -> None:
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await stream.aclose()


async def read_nothing(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        await anyio.sleep_forever()


async def test_bytes_go_and_come_back(anyio_backend: str) -> None:
    async with serving(echo) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream:
            assert isinstance(stream, RawSocketStream)
            await stream.send(b"ping")
            received = b""
            while len(received) < 4:
                received += await stream.receive()
            assert received == b"ping"
            assert stream.extra(anyio.abc.SocketAttribute.remote_port) == port
            assert stream.extra(anyio.abc.SocketAttribute.remote_address) == ("127.0.0.1", port)


async def test_a_large_send_waits_for_the_peer_and_arrives_whole(anyio_backend: str) -> None:
    # More than the socket buffers hold: the send must wait for writability.
    payload = bytes(range(256)) * 32 * 1024  # 8 MiB
    async with serving(echo) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream, anyio.create_task_group() as tg:
            received = bytearray()

            async def read_all() -> None:
                while len(received) < len(payload):
                    received.extend(await stream.receive())

            tg.start_soon(read_all)
            await stream.send(payload)
    assert received == payload


async def test_end_of_stream_when_the_server_closes(anyio_backend: str) -> None:
    async with serving(close_at_once) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream:
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()


async def test_a_reset_is_a_broken_resource_naming_the_os_error(anyio_backend: str) -> None:
    async with serving(reset_at_once) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream:
            with pytest.raises(anyio.BrokenResourceError) as caught:
                await stream.receive()
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_use_after_close_is_a_closed_resource(anyio_backend: str) -> None:
    async with serving(echo) as port:
        stream = await open_connection("127.0.0.1", port)
        await stream.aclose()
        await stream.aclose()  # twice is fine
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"x")
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()


async def test_closing_wakes_a_waiting_receive(anyio_backend: str) -> None:
    async with serving(read_nothing) as port:
        stream = await open_connection("127.0.0.1", port)
        outcome: list[type[BaseException]] = []

        async def wait_for_bytes() -> None:
            try:
                await stream.receive()
            except anyio.ClosedResourceError as exc:
                outcome.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_bytes)
            await anyio.wait_all_tasks_blocked()
            await stream.aclose()
    assert outcome == [anyio.ClosedResourceError]


async def test_two_tasks_cannot_receive_at_once(anyio_backend: str) -> None:
    async with serving(read_nothing) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(stream.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await stream.receive()
            tg.cancel_scope.cancel()


async def test_a_waiting_receive_is_cancelled_by_its_scope(anyio_backend: str) -> None:
    async with serving(read_nothing) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await stream.receive()
            assert scope.cancelled_caught
            # The socket is still usable after the cancelled wait.
            await stream.send(b"still open")


async def test_bytes_always_ready_do_not_starve_other_tasks(anyio_backend: str) -> None:
    # Every receive completes at once (the bytes are buffered before the
    # reads start): the stream must still let another task run.
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.sendall(b"x" * (YIELD_EVERY * 4))
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    stream = RawSocketStream(ours)
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(count_turns)  # runs only when this task yields
        for _ in range(YIELD_EVERY * 4):
            assert await stream.receive(1) == b"x"
        assert turns > 0
        tg.cancel_scope.cancel()
    theirs.close()


async def test_send_eof_ends_the_peers_stream(anyio_backend: str) -> None:
    got: list[bytes] = []

    async def read_to_the_end(peer: anyio.abc.SocketStream) -> None:
        async with peer:
            data = b""
            try:
                while True:
                    data += await peer.receive()
            except anyio.EndOfStream:
                got.append(data)
            await peer.send(b"bye")

    async with serving(read_to_the_end) as port:
        stream = await open_connection("127.0.0.1", port)
        async with stream:
            await stream.send(b"all of it")
            await stream.send_eof()
            assert await stream.receive() == b"bye"
    assert got == [b"all of it"]


@pytest.mark.parametrize("one_call", [True, False], ids=["socket-flags", "setblocking"])
async def test_a_connected_socket_is_non_blocking_and_not_inherited(
    anyio_backend: str, one_call: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made non-blocking by the ``socket()`` call where the system has
    SOCK_NONBLOCK (Linux), by ``setblocking(False)`` elsewhere: either way a
    non-blocking, close-on-exec, no-delay TCP socket."""
    import anyprobe.net

    if one_call and not getattr(socket, "SOCK_NONBLOCK", 0):
        pytest.skip("no SOCK_NONBLOCK on this system")
    if not one_call:
        monkeypatch.setattr(anyprobe.net, "_SOCK_NONBLOCK", 0)
        monkeypatch.setattr(anyprobe.net, "_NONBLOCKING_STREAM", socket.SOCK_STREAM)
    async with serving(echo) as port:
        sock = await anyprobe.net.connect_socket("127.0.0.1", port)
        with sock:
            assert sock.getblocking() is False
            assert sock.gettimeout() == 0.0
            assert sock.get_inheritable() is False
            assert sock.type == socket.SOCK_STREAM
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            stream = RawSocketStream(sock)
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
