"""Scale: checks/s and peak RSS of the null probe against the number of
targets and against the concurrency, and the memory each target costs.

    python benchmarks/scale_bench.py                       # both backends
    python benchmarks/scale_bench.py --sizes 1000 10000 --concurrency 10 100 --json

The null probe (a checkpoint and an ok outcome, see ``null_bench.py``) makes
the scheduler, target validation and result stream the whole cost. Each
measurement runs in a fresh interpreter, so its peak RSS (``ru_maxrss``) is its
own; "start-up RSS" is the same interpreter with anyprobe imported and no
check run, and each run's RSS above it is what the checks cost. The memory a
target costs is the slope between the two largest sizes: (RSS(n2) - RSS(n1))
/ (n2 - n1) bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = [1_000, 10_000, 100_000, 1_000_000]
CONCURRENCIES = [10, 100, 1_000]
#: Targets for the concurrency sweep.
SWEEP_TARGETS = 100_000
#: Concurrency for the size sweep (null_bench's default).
SIZE_CONCURRENCY = 1_000

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
import null_bench
import anyprobe, anyprobe._api
null_bench.BACKEND = {backend!r}
null_bench.CONCURRENCY = {concurrency}
n = {n}
seconds = null_bench.scheduled(n) if n else 0.0
print(json.dumps({{"seconds": seconds,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def measure(n: int, concurrency: int, backend: str) -> dict[str, float]:
    """One run of ``n`` null checks in a fresh interpreter: seconds, checks/s, peak RSS."""
    code = CHILD.format(here=str(HERE), backend=backend, concurrency=concurrency, n=n)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1800
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rate = n / data["seconds"] if n else 0.0
    return {"targets": n, "concurrency": concurrency, "seconds": data["seconds"],
            "rate": rate, "rss": data["rss"]}  # fmt: skip


def run(
    backends: list[str], sizes: list[int], concurrencies: list[int], repeat: int
) -> dict[str, Any]:
    """Every measurement; the best rate of ``repeat`` runs, with that run's RSS."""

    def best(n: int, concurrency: int, backend: str) -> dict[str, float]:
        runs = [measure(n, concurrency, backend) for _ in range(repeat)]
        return max(runs, key=lambda m: m["rate"])

    report: dict[str, Any] = {"sizes": sizes, "concurrencies": concurrencies, "backends": {}}
    for backend in backends:
        baseline = min(measure(0, 1, backend)["rss"] for _ in range(repeat))
        by_size = [best(n, SIZE_CONCURRENCY, backend) for n in sizes]
        by_concurrency = [best(SWEEP_TARGETS, c, backend) for c in concurrencies]
        large = sorted(by_size, key=lambda m: m["targets"])[-2:]
        per_target = (
            (large[1]["rss"] - large[0]["rss"]) / (large[1]["targets"] - large[0]["targets"])
            if len(large) == 2
            else None
        )
        rss = {m["targets"]: m["rss"] for m in by_size}
        report["backends"][backend] = {
            "startup_rss": baseline,
            "by_size": by_size,
            "by_concurrency": by_concurrency,
            "bytes_per_target": per_target,
            "rss_100k_over_10k": rss[100_000] / rss[10_000]
            if 100_000 in rss and 10_000 in rss
            else None,
        }
        print(f"{backend}: done", file=sys.stderr, flush=True)
    return report


def markdown(report: dict[str, Any]) -> str:
    mb = 1024 * 1024
    lines = [
        f"Null probe, concurrency {SIZE_CONCURRENCY:,} (targets sweep) and "
        f"{SWEEP_TARGETS:,} targets (concurrency sweep); peak RSS of the whole process.",
        "",
        "| backend | targets | concurrency | checks/s | peak RSS | RSS above start-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, data in report["backends"].items():
        for m in data["by_size"] + data["by_concurrency"]:
            lines.append(
                f"| {backend} | {m['targets']:,} | {m['concurrency']:,} | {m['rate']:,.0f} "
                f"| {m['rss'] / mb:,.0f} MB | {(m['rss'] - data['startup_rss']) / mb:,.0f} MB |"
            )
    lines.append("")
    for backend, data in report["backends"].items():
        parts = [f"start-up RSS {data['startup_rss'] / mb:.0f} MB"]
        if data["bytes_per_target"] is not None:
            parts.append(f"{data['bytes_per_target']:,.0f} bytes per target")
        if data["rss_100k_over_10k"] is not None:
            parts.append(f"RSS at 100k / at 10k targets = {data['rss_100k_over_10k']:.2f}")
        lines.append(f"- {backend}: " + ", ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--concurrency", type=int, nargs="+", default=CONCURRENCIES)
    parser.add_argument("--backends", nargs="+", default=["asyncio", "trio"])
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    report = run(args.backends, args.sizes, args.concurrency, args.repeat)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
