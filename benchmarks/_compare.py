"""What the TCP and DNS benchmarks share: timing a pool of workers, the two
anyprobe loops (the probe called directly, the public API), and the table that
sets them beside a plain loop, median of alternating rounds, on both backends.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: One check of a plain loop: returns True when the target answered well.
OneCheck = Callable[[], Awaitable[bool]]
#: A loop to measure: (port, checks, concurrency) -> (checks/s, CPU µs per check).
Loop = Callable[[int, int, int], Awaitable[tuple[float, float]]]


async def timed_workers(one_check: OneCheck, checks: int, concurrency: int) -> tuple[float, float]:
    """``checks`` runs of ``one_check`` by ``concurrency`` workers; all must succeed."""
    import anyio

    remaining = iter(range(checks))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            with anyio.fail_after(5):
                if await one_check():
                    ok += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ok == checks, ok
    return checks / elapsed, cpu / checks * 1e6


async def anyprobe_checks(
    url: str, checks: int, concurrency: int, options: dict[str, Any] | None = None
) -> tuple[float, float]:
    """``url`` checked ``checks`` times through anyprobe's public API."""
    import anyprobe

    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    start, cpu = time.perf_counter(), time.process_time()
    results = await anyprobe.check(
        [url] * checks, manager=manager, concurrency=concurrency, timeout=5, options=options
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r.summary for r in results if r.status is not anyprobe.Status.OK]
    assert not failed, failed[:3]
    return checks / elapsed, cpu / checks * 1e6


async def probe_direct(
    url: str, checks: int, concurrency: int, options: dict[str, Any] | None = None
) -> tuple[float, float]:
    """The probe's own cost: its ``check`` called directly, without the
    scheduler (no limiter, no Result, no result stream)."""
    import anyio

    import anyprobe

    manager, [target] = anyprobe.prepare([url], options=options)
    probe = manager.probes[target.probe]

    async def one_check() -> bool:
        ctx = anyprobe.CheckContext(timeout=5, deadline=anyio.current_time() + 5)
        outcome = await probe.check(target, target.options, ctx)
        return outcome.status is anyprobe.Status.OK

    return await timed_workers(one_check, checks, concurrency)


def parse_args(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="median of N alternating rounds")
    return parser.parse_args()


def compare(
    port: int,
    url: str,
    plain: Loop,
    labels: dict[str, str],
    args: argparse.Namespace,
    options: dict[str, Any] | None = None,
) -> None:
    """Print the table: the plain loop, the probe called directly, anyprobe.check."""
    import anyio

    loops: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
        "plain": lambda: plain(port, args.checks, args.concurrency),
        "probe": lambda: probe_direct(url, args.checks, args.concurrency, options),
        "anyprobe": lambda: anyprobe_checks(url, args.checks, args.concurrency, options),
    }
    print("| backend | loop | checks/s | vs plain | CPU per check | plain CPU / this CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for backend in ("asyncio", "trio"):
        rates: dict[str, list[float]] = {name: [] for name in loops}
        cpu: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, run in loops.items():
                rate, micros = anyio.run(run, backend=backend)
                rates[name].append(rate)
                cpu[name].append(micros)
        plain_rate = statistics.median(rates["plain"])
        plain_cpu = statistics.median(cpu["plain"])
        for name, label in labels.items():
            rate, micros = statistics.median(rates[name]), statistics.median(cpu[name])
            print(
                f"| {backend} | {label} | {rate:,.0f} | {rate / plain_rate:.2f}x "
                f"| {micros:.0f} µs | {plain_cpu / micros:.2f}x |"
            )
