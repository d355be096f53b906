"""gRPC health checks per second: anyprobe's grpc probe vs a plain h2 loop.

The grpc probe against grpcio's own server with its health servicer (in a
process of its own, so that its CPU does not compete with the client for the
GIL), next to a plain loop that does what a check does without anyprobe: an
anyio TCP connection, h2's client connection, the Health/Check call, its
answer read to the end and its serving status decoded. On asyncio and on
trio:

    python benchmarks/grpc_bench.py                 # 2000 checks, 20 at once, 5 rounds
    python benchmarks/grpc_bench.py --checks 500 --rounds 3
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from _compare import compare, parse_args, timed_workers

GRPC_SERVER = """
from concurrent import futures
import grpc, time
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
servicer = health.HealthServicer()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


@contextlib.contextmanager
def grpc_server() -> Iterator[int]:
    """grpcio's health server in a process of its own; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-c", GRPC_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=5)


async def plain_h2_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: one connection per check, the call sent with h2, the
    answer read until its stream ends, the status (SERVING) decoded."""
    import anyio
    import h2.config
    import h2.connection
    import h2.events

    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]

    async def one_check() -> bool:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.send_headers(1, headers)
            conn.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)
            await stream.send(conn.data_to_send())
            body, trailers = b"", {}
            while True:
                events = conn.receive_data(await stream.receive())
                for event in events:
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = dict(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        return trailers.get(b"grpc-status") == b"0" and body[5:] == b"\x08\x01"
                outgoing = conn.data_to_send()
                if outgoing:
                    await stream.send(outgoing)

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    print(f"{args.checks} checks, {args.concurrency} at once, {args.rounds} rounds")
    with grpc_server() as port:
        print("\ngRPC Health/Check against grpcio's server:\n")
        labels = {
            "plain": "plain anyio + h2 loop",
            "probe": "grpc probe called directly",
            "anyprobe": "anyprobe.check(grpc://...)",
        }
        compare(port, f"grpc://127.0.0.1:{port}", plain_h2_loop, labels, args)


if __name__ == "__main__":
    main()
