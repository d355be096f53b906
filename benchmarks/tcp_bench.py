"""TCP connect checks per second: anyprobe's tcp probe vs a plain anyio.connect_tcp loop.

Both connect to the same loopback listener (a separate process that accepts
and closes, so its CPU does not compete with the client for the GIL), with
the same number of concurrent workers, alternating, on asyncio and on trio:

    python benchmarks/tcp_bench.py                       # 2000 checks, 20 at once, 5 rounds
    python benchmarks/tcp_bench.py --checks 5000 --concurrency 50 --rounds 3

The table gives the median checks/s of each (wall clock) and their ratio, and
the client's CPU time per check (process time, which other load on the
machine disturbs less) and the plain loop's over anyprobe's.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

from _compare import compare, parse_args, timed_workers

SERVER = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0), backlog=4096)
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
"""


@contextlib.contextmanager
def listener_process() -> Iterator[int]:
    """A process that accepts and closes every connection; yields its port."""
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


async def plain_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: workers connecting with anyio.connect_tcp under fail_after."""
    import anyio

    async def one_check() -> bool:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.aclose()
        return True

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    print(f"{args.checks} TCP connect checks, {args.concurrency} at once, {args.rounds} rounds")
    with listener_process() as port:
        labels = {
            "plain": "plain anyio.connect_tcp loop",
            "probe": "tcp probe called directly",
            "anyprobe": "anyprobe.check(tcp://...)",
        }
        compare(port, f"tcp://127.0.0.1:{port}", plain_loop, labels, args)


if __name__ == "__main__":
    main()
