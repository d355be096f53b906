"""WebSocket checks per second: anyprobe's websocket probe vs a plain wsproto loop.

Against a WebSocket echo server in a process of its own (anyprobe's demo
server: wsproto on anyio, asyncio), each check connects, upgrades
(``GET /echo``, 101 expected), sends the text message ``ping``, reads the echo,
and closes (its close frame sent, the server's awaited). The plain loop does
that with wsproto over an anyio TCP connection, as a small script would; the
probe runs with ``send = "ping"`` and ``expect = "ping"``. On asyncio and on
trio:

    python benchmarks/ws_bench.py                   # 2000 checks, 20 at once, 5 rounds
    python benchmarks/ws_bench.py --checks 500 --rounds 3
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from _compare import compare, parse_args, timed_workers

ECHO_SERVER = """
import anyio, anyio.abc
from anyprobe.plugins._demo_ws import _serve

async def main():
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    async def handle(stream):
        await _serve(stream, False)
    await listener.serve(handle)

anyio.run(main)
"""


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """The echo server in a process of its own; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=5)


async def plain_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: upgrade, one message and its echo, a clean close, with wsproto."""
    import anyio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        Request,
        TextMessage,
    )

    async def one_check() -> bool:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send(ws.send(Request(host=f"127.0.0.1:{port}", target="/echo")))
            accepted = echoed = closed = False
            while not closed:
                try:
                    ws.receive_data(await stream.receive(65536))
                except anyio.EndOfStream:
                    break
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        accepted = True
                        await stream.send(ws.send(Message(data="ping")))
                    elif isinstance(event, TextMessage):
                        echoed = event.data == "ping"
                        await stream.send(ws.send(CloseConnection(code=1000)))
                    elif isinstance(event, CloseConnection):
                        closed = True
            return accepted and echoed

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    print(f"{args.checks} checks, {args.concurrency} at once, {args.rounds} rounds")
    with echo_server() as port:
        print("\nWebSocket upgrade, message, echo and close against an echo server:\n")
        labels = {
            "plain": "plain anyio + wsproto loop",
            "probe": "websocket probe called directly",
            "anyprobe": "anyprobe.check(ws://...)",
        }
        options = {"send": "ping", "expect": "ping"}
        compare(port, f"ws://127.0.0.1:{port}/echo", plain_loop, labels, args, options)


if __name__ == "__main__":
    main()
