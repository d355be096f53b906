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

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

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

    remaining = iter(range(checks))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            with anyio.fail_after(5):
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.aclose()
            ok += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ok == checks
    return checks / elapsed, cpu / checks * 1e6


async def anyprobe_checks(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The same connects as ``tcp://`` checks through anyprobe's public API."""
    import anyprobe

    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    start, cpu = time.perf_counter(), time.process_time()
    results = await anyprobe.check(
        [f"tcp://127.0.0.1:{port}"] * checks,
        manager=manager,
        concurrency=concurrency,
        timeout=5,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r.summary for r in results if r.status is not anyprobe.Status.OK]
    assert not failed, failed[:3]
    return checks / elapsed, cpu / checks * 1e6


async def probe_direct(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The probe's own cost: workers calling its ``check`` directly, without the
    scheduler (no limiter, no Result, no result stream)."""
    import anyio

    import anyprobe

    manager, [target] = anyprobe.prepare([f"tcp://127.0.0.1:{port}"])
    probe = manager.probes[target.probe]
    remaining = iter(range(checks))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            deadline = anyio.current_time() + 5
            ctx = anyprobe.CheckContext(timeout=5, deadline=deadline)
            with anyio.fail_after(5):
                outcome = await probe.check(target, target.options, ctx)
            if outcome.status is anyprobe.Status.OK:
                ok += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ok == checks, ok
    return checks / elapsed, cpu / checks * 1e6


def main() -> None:
    import anyio

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="median of N alternating rounds")
    args = parser.parse_args()
    print(f"{args.checks} TCP connect checks, {args.concurrency} at once, {args.rounds} rounds")
    print("| backend | loop | checks/s | vs plain | CPU per check | plain CPU / this CPU |")
    print("|---|---|---:|---:|---:|---:|")
    with listener_process() as port:
        for backend in ("asyncio", "trio"):
            rates: dict[str, list[float]] = {"plain": [], "probe": [], "anyprobe": []}
            cpu: dict[str, list[float]] = {"plain": [], "probe": [], "anyprobe": []}
            for _ in range(args.rounds):
                for name, run in (
                    ("plain", plain_loop),
                    ("probe", probe_direct),
                    ("anyprobe", anyprobe_checks),
                ):
                    rate, micros = anyio.run(
                        run, port, args.checks, args.concurrency, backend=backend
                    )
                    rates[name].append(rate)
                    cpu[name].append(micros)
            plain = statistics.median(rates["plain"])
            plain_cpu = statistics.median(cpu["plain"])
            labels = {
                "plain": "plain anyio.connect_tcp loop",
                "probe": "tcp probe called directly",
                "anyprobe": "anyprobe.check(tcp://...)",
            }
            for name, label in labels.items():
                rate, micros = statistics.median(rates[name]), statistics.median(cpu[name])
                print(
                    f"| {backend} | {label} | {rate:,.0f} | {rate / plain:.2f}x "
                    f"| {micros:.0f} µs | {plain_cpu / micros:.2f}x |"
                )


if __name__ == "__main__":
    main()
