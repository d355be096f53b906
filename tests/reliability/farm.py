"""A loopback server farm in its own process, for runs with many targets.

``python -m tests.reliability.farm ADDRESS...`` listens on each loopback
address twice: an HTTP port (``GET /anything`` is 200 ``ok``; ``GET
/delay/MS`` answers after MS milliseconds) and a TCP port that accepts and
closes. It prints ``{"http": {address: port}, "tcp": {address: port}}`` on
one line, logs ``request`` on stderr for the first request it gets, and
serves until its stdin closes. In a separate process its CPU never competes
with the checks' for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
BACKLOG = 4096


async def serve() -> None:
    first_request = asyncio.Event()

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            if not first_request.is_set():
                first_request.set()
                print("request", file=sys.stderr, flush=True)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            if path.startswith(b"/delay/"):
                milliseconds = int(path.split(b"/")[2] or b"0")
                await asyncio.sleep(min(milliseconds, 60_000) / 1000)
            if path.startswith(b"/big/"):
                size = min(int(path.split(b"/")[2] or b"0"), 64 << 20)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                writer.write(b"x" * size)
            else:
                writer.write(RESPONSE)
            await writer.drain()
        writer.close()

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    addresses = sys.argv[1:] or ["127.0.0.1"]
    ports: dict[str, dict[str, int]] = {"http": {}, "tcp": {}}
    servers = []
    for address in addresses:
        for kind, handler in (("http", http), ("tcp", tcp)):
            server = await asyncio.start_server(handler, address, 0, backlog=BACKLOG)
            ports[kind][address] = server.sockets[0].getsockname()[1]
            servers.append(server)
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(serve())
