"""The scheduler's own cost: a no-op probe over many targets, against the bare
anyio loop of the tutorial's health checker doing the same no-op.

    python benchmarks/null_bench.py [--sizes 10000 100000] [--repeat 3]

Each measurement runs in a fresh subprocess (so peak RSS is its own), on
asyncio and on trio, and the table gives checks/s, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any
from urllib.parse import SplitResult

CONCURRENCY = 1000


def bare(n: int) -> float:
    """The tutorial's pattern: a task per target, a limiter, fail_after, a list."""
    import anyio

    async def check_one(
        url: str, results: list[dict[str, Any]], limiter: anyio.CapacityLimiter
    ) -> None:
        async with limiter:
            start = time.perf_counter()
            try:
                with anyio.fail_after(5.0):
                    await anyio.lowlevel.checkpoint()  # the no-op "check"
                results.append({"url": url, "ok": True, "latency": time.perf_counter() - start})
            except TimeoutError:
                results.append({"url": url, "ok": False, "latency": 5.0})

    async def main() -> None:
        results: list[dict[str, Any]] = []
        limiter = anyio.CapacityLimiter(CONCURRENCY)
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(check_one, f"null://t{i}", results, limiter)
        assert len(results) == n

    return _timed(main)


def scheduled(n: int) -> float:
    """The same no-op as an anyprobe probe plugin, through the public API."""
    import anyprobe

    # Imported up front, as anyio is for the bare loop: the first call of a
    # process imports them (a worker thread, about 30 ms), every later one not.
    import anyprobe._api
    from anyprobe._api_prepare import _import_run_modules

    _import_run_modules()

    class NullProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
        name = "null"
        schemes = ("null",)

        def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
            return url.hostname or "", None

        async def check(
            self,
            target: anyprobe.Target,
            options: anyprobe.ProbeOptions,
            ctx: anyprobe.CheckContext,
        ) -> anyprobe.Outcome:
            import anyio

            await anyio.lowlevel.checkpoint()
            return anyprobe.Outcome.ok("nothing to do")

    class Plugin:
        @anyprobe.hookimpl
        def anyprobe_register_probes(self, register: Any) -> None:
            register(NullProbe)

    async def main() -> None:
        manager = anyprobe.PluginManager()
        manager.register(Plugin(), name="null")
        count = 0
        async with anyprobe.stream(
            (f"null://t{i}" for i in range(n)), manager=manager, concurrency=CONCURRENCY
        ) as results:
            async for _ in results:
                count += 1
        assert count == n

    return _timed(main)


BACKEND = "asyncio"


#: CPU seconds of the last _timed() run (user and system, this process).
CPU_SECONDS = 0.0


def _timed(main: Any) -> float:
    import anyio

    global CPU_SECONDS
    start, cpu = time.perf_counter(), time.process_time()
    anyio.run(main, backend=BACKEND)
    CPU_SECONDS = time.process_time() - cpu
    return time.perf_counter() - start


def measure(kind: str, n: int, backend: str) -> dict[str, float]:
    """Run one measurement in a subprocess; checks/s and peak RSS in MB."""
    code = (
        "import json, resource, sys; sys.path.insert(0, 'benchmarks'); import null_bench as b; "
        f"b.BACKEND = {backend!r}; s = b.{kind}({n}); "
        "print(json.dumps({'seconds': s, 'cpu': b.CPU_SECONDS, 'rss_mb': "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    return {"rate": n / data["seconds"], "cpu_us": data["cpu"] / n * 1e6, "rss_mb": data["rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (interleaved)")
    args = parser.parse_args()
    rows = []
    for backend in ("asyncio", "trio"):
        for n in args.sizes:
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):
                for kind in ("bare", "scheduled"):
                    m = measure(kind, n, backend)
                    if kind not in best:
                        best[kind] = m
                    else:  # the best rate and, apart, the least CPU of the runs
                        best[kind]["cpu_us"] = min(best[kind]["cpu_us"], m["cpu_us"])
                        if m["rate"] > best[kind]["rate"]:
                            best[kind] = {**m, "cpu_us": best[kind]["cpu_us"]}
            rows.append((backend, n, best["bare"], best["scheduled"]))
    print(
        "| backend | targets | bare loop checks/s | anyprobe checks/s | speed ratio "
        "| bare CPU per check | anyprobe CPU per check | CPU ratio "
        "| bare peak RSS | anyprobe peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, n, b, s in rows:
        print(
            f"| {backend} | {n:,} | {b['rate']:,.0f} | {s['rate']:,.0f} "
            f"| {s['rate'] / b['rate']:.2f}x "
            f"| {b['cpu_us']:.0f} µs | {s['cpu_us']:.0f} µs | {b['cpu_us'] / s['cpu_us']:.2f}x "
            f"| {b['rss_mb']:.0f} MB | {s['rss_mb']:.0f} MB |"
        )
    for backend in ("asyncio", "trio"):
        by_n = {n: s for b_, n, _, s in rows if b_ == backend}
        if len(by_n) >= 2:
            small, large = min(by_n), max(by_n)
            print(
                f"{backend}: anyprobe RSS at {large:,} / at {small:,} targets = "
                f"{by_n[large]['rss_mb'] / by_n[small]['rss_mb']:.2f}"
            )


if __name__ == "__main__":
    main()
