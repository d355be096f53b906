"""Does anyprobe block the event loop of the program that embeds it?

A heartbeat task sleeps 10 ms in a loop beside ``await anyprobe.check()`` of
20,000 targets, called without ``manager=`` (so the call discovers the
plugins itself) and measures how late each beat wakes up. The first call in a
fresh process (plugin discovery, imports) and a second call are measured
separately, each on asyncio and trio, each in its own process, next to a
baseline: the heartbeat alone, for as long as the first call took.

Half the targets connect to a loopback listener (a child process that accepts
and closes), half to a port that refuses. Run it by hand::

    .venv/bin/python benchmarks/heartbeat_bench.py [--targets 20000] [--runs 3]

Goal: no beat more than 20 ms late. On a shared machine the wall-clock
lateness also counts the time the OS gave the CPU to other processes, so a
second figure counts only the loop thread's own work: the CPU time the
thread used during a beat beyond the 10 ms interval (what the loop ran before
it could wake the heartbeat). The last column is the longest pause of
CPython's cyclic garbage collector (CPU time), and the column before it the
loop's work in the beats that had no collection: a full collection traverses
every live object of the process, the results the call is collecting
included, so it is the host's, not anyprobe's; the row after ``gc.freeze()``
shows it without the start-up objects.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

INTERVAL = 0.010

SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(4096)
print(server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    client.close()
"""

MEASURE = f"""
import gc, json, sys, time
import anyio
import anyprobe, anyprobe._api  # the host imports its libraries at start-up

backend, listening, refused, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
INTERVAL = {INTERVAL}


async def heartbeat(lateness: list[float], cpu_lateness: list[float], no_gc: list[float]) -> None:
    while True:
        before, cpu_before, collections = time.perf_counter(), time.thread_time(), len(GC_PAUSES)
        await anyio.sleep(INTERVAL)
        lateness.append(time.perf_counter() - before - INTERVAL)
        cpu_lateness.append(time.thread_time() - cpu_before - INTERVAL)
        if len(GC_PAUSES) == collections:
            no_gc.append(cpu_lateness[-1])


GC_PAUSES: list[float] = []
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.thread_time()
    else:
        GC_PAUSES.append(time.thread_time() - _gc_started[0])


gc.callbacks.append(_gc_timer)


async def beside(work) -> dict:
    lateness: list[float] = []
    cpu_lateness: list[float] = []
    no_gc: list[float] = []
    GC_PAUSES.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, lateness, cpu_lateness, no_gc)
        await anyio.sleep(0.05)  # the heartbeat is running
        start = time.perf_counter()
        count = await work()
        seconds = time.perf_counter() - start
        tg.cancel_scope.cancel()
    lateness.sort()
    return {{
        "seconds": seconds,
        "results": count,
        "beats": len(lateness),
        "max_late_ms": lateness[-1] * 1000,
        "p99_late_ms": lateness[int(len(lateness) * 0.99)] * 1000,
        "cpu_max_late_ms": max(cpu_lateness) * 1000,
        "cpu_no_gc_max_late_ms": max(no_gc) * 1000,
        "gc_max_ms": max(GC_PAUSES, default=0) * 1000,
    }}


async def main() -> None:
    import anyprobe

    urls = [
        f"tcp://127.0.0.1:{{listening if i % 2 else refused}}/{{i}}" for i in range(n)
    ]

    async def run_check() -> int:
        return len(await anyprobe.check(urls, timeout=5))

    first = await beside(run_check)
    second = await beside(run_check)
    # What a latency-sensitive host does after start-up: move what exists to
    # the permanent generation, so that a full collection scans only new objects.
    gc.collect()
    gc.freeze()
    frozen = await beside(run_check)

    async def idle() -> int:
        await anyio.sleep(first["seconds"])
        return 0

    baseline = await beside(idle)
    print(json.dumps({{"first": first, "second": second, "frozen": frozen, "baseline": baseline}}))


anyio.run(main, backend=backend)
"""


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(backend: str, listening: int, refused: int, n: int) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, backend, str(listening), str(refused), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        listening = int(server.stdout.readline())
        refused = refused_port()
        print(
            f"{args.targets:,} targets, heartbeat every {INTERVAL * 1000:.0f} ms; "
            f"worst of {args.runs} runs (each in a fresh process)\n"
        )
        print(
            "| backend | call | duration | beats | p99 late | max late "
            "| max loop CPU beyond the interval | the same, beats without a GC pause "
            "| longest GC pause (CPU) |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for backend in ("asyncio", "trio"):
            runs = [measure(backend, listening, refused, args.targets) for _ in range(args.runs)]
            for call in ("first", "second", "frozen", "baseline"):
                rows = [run[call] for run in runs]
                worst = max(rows, key=lambda row: row["max_late_ms"])
                label = {
                    "first": "first check() in the process",
                    "second": "second check()",
                    "frozen": "third check(), after gc.freeze()",
                    "baseline": "heartbeat alone",
                }[call]
                print(
                    f"| {backend} | {label} | {worst['seconds']:.2f} s | {int(worst['beats'])} "
                    f"| {max(r['p99_late_ms'] for r in rows):.1f} ms "
                    f"| {worst['max_late_ms']:.1f} ms "
                    f"| {max(r['cpu_max_late_ms'] for r in rows):.1f} ms "
                    f"| {max(r['cpu_no_gc_max_late_ms'] for r in rows):.1f} ms "
                    f"| {max(r['gc_max_ms'] for r in rows):.1f} ms |"
                )
            sys.stdout.flush()
    finally:
        server.kill()
        server.wait()
        time.sleep(0)


if __name__ == "__main__":
    main()
