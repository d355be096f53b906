"""A loopback server farm in its own process, for runs with many targets.

``python -m tests.reliability.farm ADDRESS...`` listens on each loopback
address twice: an HTTP port (``GET /anything`` is 200 ``ok``; ``GET
/delay/MS`` answers after MS milliseconds; ``GET /big/N`` answers N bytes), on
anyprobe's own HTTP/1.1 server, and a TCP port that accepts and closes. It
prints ``{"http": {address: port}, "tcp": {address: port}}`` on one line, logs
``request`` on stderr for the first request it gets, and serves until its
stdin closes. In a separate process its CPU never competes with the checks'
for the GIL.
"""

from __future__ import annotations

import contextlib
import json
import sys

import anyio
import anyio.abc
import anyio.to_thread

from anyprobe._http_server import Request, respond, serve_http

BACKLOG = 4096


async def serve() -> None:
    first_request = False

    async def http(request: Request, stream: anyio.abc.ByteStream) -> None:
        nonlocal first_request
        if not first_request:
            first_request = True
            print("request", file=sys.stderr, flush=True)
        path = request.path
        if path.startswith("/delay/"):
            milliseconds = int(path.split("/")[2] or "0")
            await anyio.sleep(min(milliseconds, 60_000) / 1000)
        if path.startswith("/big/"):
            size = min(int(path.split("/")[2] or "0"), 64 << 20)
            await respond(stream, 200, b"x" * size)
        else:
            await respond(stream, 200, b"ok\n")

    async def tcp(stream: anyio.abc.SocketStream) -> None:
        await stream.aclose()

    addresses = sys.argv[1:] or ["127.0.0.1"]
    ports: dict[str, dict[str, int]] = {"http": {}, "tcp": {}}
    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as tg:
        for address in addresses:
            ports["http"][address] = await stack.enter_async_context(
                serve_http(http, host=address, backlog=BACKLOG)
            )
            listener = await anyio.create_tcp_listener(
                local_host=address, local_port=0, backlog=BACKLOG
            )
            await stack.enter_async_context(listener)
            ports["tcp"][address] = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(listener.serve, tcp)
        print(json.dumps(ports), flush=True)
        # Serve until the parent closes our stdin (or dies).
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(serve)
