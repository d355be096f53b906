"""The gRPC probe's demo rows: a small health server on loopback, speaking
HTTP/2 with h2 (no grpcio), serving ``""`` and not serving ``down``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import anyio.abc

import anyprobe
from anyprobe.plugins._grpc_wire import (
    WireError,
    frame_message,
    parse_health_request,
    unframe_message,
)

__all__ = ["demo_services"]

#: ServingStatus of each service the demo server knows.
STATUSES = {"": 1, "down": 2}
#: Most bytes the demo server reads from one client.
MAX_CLIENT_BYTES = 65536


def _answer(h2c: Any, stream_id: int, body: bytes) -> None:
    """Answer one Check call on ``stream_id`` (its request ``body``)."""
    try:
        service = parse_health_request(unframe_message(body))
    except WireError:
        service = None
    h2c.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
    if service in STATUSES:
        h2c.send_data(stream_id, frame_message(b"\x08" + bytes([STATUSES[service]])))
        trailers = [("grpc-status", "0")]
    elif service is None:
        trailers = [("grpc-status", "3"), ("grpc-message", "bad request")]
    else:
        trailers = [("grpc-status", "5"), ("grpc-message", "unknown service")]
    h2c.send_headers(stream_id, trailers, end_stream=True)


async def serve_health(stream: anyio.abc.SocketStream) -> None:
    """Serve one client connection until it closes (or sends too much)."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    h2c.initiate_connection()
    await stream.send(h2c.data_to_send())
    bodies: dict[int, bytearray] = {}
    received = 0
    async with stream:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while received < MAX_CLIENT_BYTES:
                data = await stream.receive()
                received += len(data)
                try:
                    events = h2c.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                        h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        _answer(h2c, event.stream_id, bytes(bodies.pop(event.stream_id, b"")))
                outgoing = h2c.data_to_send()
                if outgoing:
                    await stream.send(outgoing)


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A health server: ok for the server, critical for service ``down``
    (no row without h2)."""
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        yield []
        return
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_health)
        yield [
            anyprobe.DemoCheck(
                "grpc: health SERVING", f"grpc://127.0.0.1:{port}", anyprobe.Status.OK
            ),
            anyprobe.DemoCheck(
                "grpc: service NOT_SERVING",
                f"grpc://127.0.0.1:{port}",
                anyprobe.Status.CRITICAL,
                options={"service": "down"},
            ),
        ]
        tg.cancel_scope.cancel()
