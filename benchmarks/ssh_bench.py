"""SSH checks per second: asyncio running asyncssh directly vs trio through the bridge.

Both backends check the same loopback asyncssh server (a separate process, so
the server's CPU does not compete with the client for the GIL), in the same
run, alternating, and the medians are compared:

    python benchmarks/ssh_bench.py                 # defaults: 200 banner, 100 full checks
    python benchmarks/ssh_bench.py --banner 400 --full 200 --concurrency 10 --repeats 3

It also times a bare bridge crossing (a coroutine that returns at once) against
awaiting the same coroutine directly, to show the per-call cost on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import anyprobe
from anyprobe.bridge import AsyncioBridge


def serve(directory: str) -> None:
    """The server process: an asyncssh server on loopback; prints its port, then waits."""
    import asyncssh

    async def shell(process: Any) -> None:
        process.stdout.write("ok\n")
        process.exit(0)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

    async def main() -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = Path(directory) / "id_ed25519"
        client_key.write_private_key(str(key_path))
        key_path.chmod(0o600)
        authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            process_factory=shell,
        )
        port = server.sockets[0].getsockname()[1]
        print(port, host_key.get_fingerprint("sha256"), key_path, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


async def run_checks(url: str, count: int, concurrency: int, options: dict[str, Any]) -> float:
    """Checks per second for ``count`` checks of ``url``; all must be ok."""
    start = time.perf_counter()
    results = await anyprobe.check(
        [url] * count, options=options, concurrency=concurrency, timeout=10
    )
    elapsed = time.perf_counter() - start
    bad = [r.summary for r in results if r.status is not anyprobe.Status.OK]
    if bad:
        raise SystemExit(f"{len(bad)} checks failed, first: {bad[0]}")
    return count / elapsed


async def noop() -> None:
    return None


async def crossing_cost(calls: int) -> float:
    """Microseconds per call: through the bridge's thread on trio, directly on asyncio."""
    async with AsyncioBridge() as bridge:
        await bridge.run(noop)  # start the thread outside the timing
        start = time.perf_counter()
        for _ in range(calls):
            await bridge.run(noop)
        return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banner", type=int, default=200, help="banner checks per round")
    parser.add_argument("--full", type=int, default=100, help="login+command checks per round")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000, help="bare bridge crossings")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port, fingerprint, key_file = server.stdout.readline().split()
            url = f"ssh://bench@127.0.0.1:{port}"
            banner = {"host_key_fingerprint": fingerprint}
            full = {**banner, "key_file": key_file, "command": "check", "expect_output": "ok"}
            rates: dict[tuple[str, str], list[float]] = {}
            for backend in ("asyncio", "trio"):  # warm up: imports, first key exchange
                anyio.run(run_checks, url, 10, args.concurrency, full, backend=backend)
            for repeat in range(args.repeats):
                backends = ["asyncio", "trio"] if repeat % 2 == 0 else ["trio", "asyncio"]
                for backend in backends:
                    for kind, count, options in (
                        ("banner", args.banner, banner),
                        ("full", args.full, full),
                    ):
                        rate = anyio.run(
                            run_checks, url, count, args.concurrency, options, backend=backend
                        )
                        rates.setdefault((kind, backend), []).append(rate)
            crossing = {
                backend: anyio.run(crossing_cost, args.calls, backend=backend)
                for backend in ("asyncio", "trio")
            }
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=10)

    print(
        f"python {sys.version.split()[0]}, concurrency {args.concurrency}, "
        f"median of {args.repeats} rounds"
    )
    print(f"{'check':<8} {'asyncio direct':>16} {'trio via bridge':>16} {'trio/asyncio':>13}")
    for kind in ("banner", "full"):
        direct = statistics.median(rates[(kind, "asyncio")])
        bridged = statistics.median(rates[(kind, "trio")])
        print(f"{kind:<8} {direct:>12.1f} /s {bridged:>12.1f} /s {bridged / direct:>13.2f}")
    print(
        f"bare crossing: asyncio (direct await) {crossing['asyncio']:.1f} us/call, "
        f"trio (bridge thread) {crossing['trio']:.1f} us/call"
    )


if __name__ == "__main__":
    main()
