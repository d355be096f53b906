"""Run every benchmark and write docs/benchmarks.md with a table and a plot.

    pip install -e '.[bench]'        # matplotlib for the plot, aiohttp for the peer checker
    python benchmarks/run_all.py     # about 15 minutes on 2 cores
    python benchmarks/run_all.py --quick   # smaller sizes, one repeat: a smoke run

Local targets come from Debian's packages and are started on loopback with
their own temporary configuration, then stopped by PID: nginx, dnsmasq and
sshd for the peer comparison (``local_targets.py``); ``http_bench.py`` and
``dns_bench.py`` start their own nginx and dnsmasq the same way. Each
benchmark script runs as it would by hand, in a subprocess; its tables go
into the page as they are, and the goals of the project are checked from
the same run's figures, so every ratio compares measurements taken minutes
apart on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs"
PAGE = DOCS / "benchmarks.md"
PLOT = DOCS / "img" / "benchmarks.png"
#: Each script's raw output of the last run (git-ignored), for --render.
RESULTS = HERE / "results" / "last-run"

Table = tuple[list[str], list[list[str]]]


def run_script(name: str, *args: str, timeout: float = 3600) -> str:
    """``python benchmarks/NAME ARGS``; its stdout (its progress goes to our stderr)."""
    print(f"== {name} {' '.join(args)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / name), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.perf_counter() - start
    print(f"   {name}: exit {proc.returncode} in {took:.0f} s", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        return f"(`{name}` failed with exit status {proc.returncode})\n{proc.stdout}"
    return proc.stdout


def tables(text: str) -> list[Table]:
    """Every Markdown table in ``text``: (header cells, rows of cells)."""
    found: list[Table] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            found.append((header, rows))
        else:
            i += 1
    return found


def number(cell: str) -> float | None:
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell)
    return float(match.group().replace(",", "")) if match else None


def table_with(text: str, *columns: str) -> list[dict[str, str]]:
    """The rows, as dicts, of the first table whose header has every column."""
    for header, rows in tables(text):
        if all(any(c == h for h in header) for c in columns):
            return [dict(zip(header, row, strict=False)) for row in rows]
    return []


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be measured
    note: str = ""
    why: str = ""  # for a missed goal: the reason, with this run's figures


def http_goals(http: str, false_timeouts: str) -> list[Goal]:
    rows = table_with(http, "backend", "checker", "checks/s")
    rate = {(r["backend"], r["checker"]): number(r["checks/s"]) for r in rows}
    cpu = {(r["backend"], r["checker"]): number(r.get("client CPU per check", "")) for r in rows}

    def cpu_of(backend: str, checker: str) -> str:
        value = cpu.get((backend, checker))
        return f"{value:.0f} µs" if value else "?"

    goals = []
    for backend in ("asyncio", "uvloop", "trio"):
        # aiohttp on the same loop (asyncio's for trio, where aiohttp does not run).
        peer_loop = "asyncio" if backend == "trio" else backend
        aiohttp = rate.get((peer_loop, "aiohttp-fresh"))
        keepalive = rate.get((peer_loop, "aiohttp-keepalive"))
        mine = rate.get((backend, "anyprobe-api"))
        tutorial = rate.get((backend, "tutorial-httpx"))
        reuse = rate.get((backend, "anyprobe-reuse"))
        if mine and aiohttp:
            ratio = mine / aiohttp
            why = (
                f"short by {1 - ratio:.0%}. Client CPU per check: anyprobe "
                f"{cpu_of(backend, 'anyprobe-api')}, aiohttp {cpu_of(peer_loop, 'aiohttp-fresh')}."
                " Each anyprobe check resolves the name, opens its own connection through "
                "anyio's socket streams, times every phase and builds a full Result; aiohttp "
                "reads inside asyncio protocol callbacks, with no stream layer or task per read "
                "(both parse with llhttp when httptools is installed)."
                + (" aiohttp runs on asyncio only: this trio figure is compared with aiohttp "
                   "on asyncio." if backend == "trio" else "")
            )  # fmt: skip
            goals.append(Goal(f"HTTP fresh connections, {backend}", ">= 1.0x aiohttp (fresh)",
                              f"{ratio:.2f}x ({mine:,.0f} vs {aiohttp:,.0f} checks/s)",
                              ratio >= 1.0, why=why))  # fmt: skip
        if mine and tutorial:
            ratio = mine / tutorial
            goals.append(Goal(f"HTTP fresh connections, {backend}", ">= 3x the tutorial's httpx",
                              f"{ratio:.2f}x ({mine:,.0f} vs {tutorial:,.0f} checks/s)",
                              ratio >= 3.0))  # fmt: skip
        if reuse and keepalive:
            ratio = reuse / keepalive
            floor = rate.get((backend, "anyio-h11-keepalive"))
            why = f"short by {(0.8 - ratio) / 0.8:.0%} of the goal."
            if floor:
                why += (
                    f" A bare anyio + h11 keep-alive loop does {floor:,.0f} checks/s on "
                    f"{backend} in this run ({floor / keepalive:.2f}x aiohttp keep-alive; it "
                    "parses with h11, in pure Python); anyprobe with reuse_connections does "
                    f"{reuse / floor:.0%} of that, and {reuse / (mine or reuse):.1f}x its own "
                    "fresh-connection rate. The rest is anyprobe's per-check work (phases, "
                    "thresholds, assertions, a Result per check, the result stream)."
                )
            goals.append(Goal(f"HTTP connection reuse, {backend}", ">= 0.8x aiohttp keep-alive",
                              f"{ratio:.2f}x ({reuse:,.0f} vs {keepalive:,.0f} checks/s)",
                              ratio >= 0.8, why=why))  # fmt: skip
        elif not reuse:
            missing = "http_bench.py has no anyprobe-reuse row"
            goals.append(
                Goal(f"HTTP connection reuse, {backend}", ">= 0.8x aiohttp keep-alive",
                     "not measured", None, missing)
            )  # fmt: skip
    unhealthy = [number(r.get("unhealthy", "")) or 0 for r in rows]
    counted = table_with(false_timeouts, "backend", "concurrency", "unhealthy")
    total = sum(int(number(r["checks"]) or 0) for r in counted)
    bad = sum(int(number(r["unhealthy"]) or 0) for r in counted) + int(sum(unhealthy))
    measured = f"{bad} in {total:,} counted checks and every benchmark run"
    goals.append(Goal("Zero false timeouts", "0 unhealthy on healthy nginx", measured, bad == 0))
    return goals


def null_goals(null: str) -> list[Goal]:
    goals = []
    rows = table_with(null, "backend", "targets", "speed ratio")
    for r in rows:
        ratio = number(r["speed ratio"]) or 0.0
        targets = number(r["targets"]) or 0
        rate = number(r.get("anyprobe checks/s", "")) or 0
        largest = max(
            (x for x in rows if x["backend"] == r["backend"]), key=lambda x: number(x["targets"])
        )
        why = (
            f"short by {(2.0 - ratio) / 2.0:.0%} of the goal. The whole run of "
            f"{targets:,.0f} null checks lasts {targets / rate if rate else 0:.2f} s, so the "
            "fixed cost of a run weighs on it: loading the plugins through their entry points, "
            "validating every target before the first check (a design rule), starting the "
            "result stream and the loop watchdog. The bare loop pays none of it; it pays per "
            "target instead (a task each), which is why the ratio grows with the targets: "
            f"{number(largest['speed ratio']) or 0:.2f}x at {largest['targets']}."
        )
        goals.append(Goal(f"Null scheduler, {r['backend']}, {r['targets']} targets",
                          ">= 2x the bare anyio loop", f"{ratio:.2f}x", ratio >= 2.0,
                          why=why))  # fmt: skip
    return goals


def scale_goals(scale: dict[str, Any]) -> list[Goal]:
    goals = []
    for backend, data in scale.get("backends", {}).items():
        ratio = data.get("rss_100k_over_10k")
        if ratio is not None:
            goals.append(Goal(f"Memory, {backend}", "RSS at 100k targets <= 1.3x RSS at 10k",
                              f"{ratio:.2f}x", ratio <= 1.3))  # fmt: skip
    return goals


def startup_goals(startup: dict[str, Any]) -> list[Goal]:
    ratio = startup.get("ratio_to_import_anyio", {}).get("anyprobe --help")
    if ratio is None:
        return []
    why = (
        f"over by {ratio / 1.5 - 1:.0%}. `anyprobe --help` imports click (about 20 ms) and "
        "the CLI module; every other import waits until a command needs it."
    )
    return [Goal("Start-up", '`anyprobe --help` <= 1.5x `python -c "import anyio"`',
                 f"{ratio:.2f}x", ratio <= 1.5, why=why)]  # fmt: skip


#: Why a newer probe's ``anyprobe.check`` loop may fall short of its plain loop.
PLAIN_LOOP_REASONS = {
    "icmp": "per check the probe attaches a kernel filter to its raw socket (about 70 µs "
    "of kernel time alone), sets three socket options (error queue, kernel timestamps, TTL), "
    "matches a random payload cookie in full and verifies checksums, then builds the "
    "statistics, thresholds and metrics; the plain loop does none of it "
    "(see the ICMP probe's page)",
    "udp": "a loopback datagram round trip costs about 70 µs of CPU on trio, so the "
    "probe's fixed costs show: phase timers, the reply's cancel scope, the context, "
    "the outcome and its summary, and the scheduler's per-check cost",
    "ntp": "as for UDP: one loopback datagram each way, next to which the probe's phase "
    "timers, reply filtering, verdict and the scheduler's per-check cost weigh",
    "grpc": "the probe speaks HTTP/2 through h2 as the plain loop does, and adds the "
    "resolve and connect phases, the gRPC status and message decoding, the summary, "
    "and the scheduler's per-check cost",
    "ws": "the probe adds the connection toolkit (resolve, connect, phases), the upgrade "
    "checks (Sec-WebSocket-Accept, subprotocols), the expectation and the close "
    "handshake's timed wait, and the scheduler's per-check cost; the echo server (one "
    "Python process) bounds every loop's rate",
    "rdap": "the probe adds the connection toolkit (resolve, connect, phases), the HTTP "
    "client's bounded reads and the JSON parse, the verdict and its details, and the "
    "scheduler's per-check cost",
}


def plain_loop_goals(outputs: dict[str, str]) -> list[Goal]:
    """>= 0.8x the plain loop for each newer probe's ``anyprobe.check`` line."""
    goals: list[Goal] = []
    for key in ("icmp", "udp-ntp", "grpc", "websocket", "rdap"):
        for header, rows in tables(outputs.get(key, "")):
            if not {"backend", "loop", "checks/s", "vs plain"} <= set(header):
                continue
            found = [dict(zip(header, row, strict=False)) for row in rows]
            for backend in ("asyncio", "trio"):
                lines = [r for r in found if r["backend"] == backend]
                if not lines:
                    continue
                plain, ours = lines[0], lines[-1]
                match = re.match(r"anyprobe\.check\((\w+)://", ours["loop"])
                ratio = number(ours["vs plain"])
                if match is None or ratio is None:
                    continue
                probe = match.group(1)
                cpu_ratio = ours.get("plain CPU / this CPU", "?")
                measured = (
                    f"{ratio:.2f}x ({ours['checks/s']} vs {plain['checks/s']} checks/s; "
                    f"CPU per check {cpu_ratio})"
                )
                cpu_text = (
                    f"client CPU per check: anyprobe {ours.get('CPU per check', '?')}, plain "
                    f"loop {plain.get('CPU per check', '?')}"
                )
                reason = PLAIN_LOOP_REASONS.get(probe, "see its section")
                if (number(cpu_ratio) or 0.0) >= 0.8:
                    why = (
                        f"short by {(0.8 - ratio) / 0.8:.0%} on the wall clock, but not in CPU: "
                        f"{cpu_text} ({cpu_ratio}). The loops of a round take turns on a shared "
                        "machine and their rates swing with the other work on it; what the "
                        f"probe costs more is small: {reason}."
                    )
                else:
                    why = f"short by {(0.8 - ratio) / 0.8:.0%} of the goal; {cpu_text}: {reason}."
                goals.append(
                    Goal(f"{probe}:// against its plain loop, {backend}", ">= 0.8x the plain loop",
                         measured, ratio >= 0.8, why=why)
                )  # fmt: skip
    return goals


def plot(http: str, null: str, scale: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    rows = table_with(http, "backend", "checker", "checks/s")
    checkers = list(dict.fromkeys(r["checker"] for r in rows))
    width = 0.38
    for offset, backend in ((-width / 2, "asyncio"), (width / 2, "trio")):
        values = [
            next((number(r["checks/s"]) or 0 for r in rows
                  if r["backend"] == backend and r["checker"] == c), 0)
            for c in checkers
        ]  # fmt: skip
        axes[0].bar([i + offset for i in range(len(checkers))], values, width, label=backend)
    axes[0].set_xticks(range(len(checkers)), checkers, rotation=30, ha="right")
    axes[0].set_title("HTTP checks/s (2,000 URLs, concurrency 100)")
    axes[0].legend()

    nulls = table_with(null, "backend", "targets", "speed ratio")
    labels = [f"{r['backend']}\n{r['targets']}" for r in nulls]
    bare = [number(r.get("bare loop checks/s", "")) or 0 for r in nulls]
    mine = [number(r.get("anyprobe checks/s", "")) or 0 for r in nulls]
    xs = range(len(labels))
    axes[1].bar([x - width / 2 for x in xs], bare, width, label="bare anyio loop")
    axes[1].bar([x + width / 2 for x in xs], mine, width, label="anyprobe scheduler")
    axes[1].set_xticks(list(xs), labels)
    axes[1].set_title("Null probe checks/s")
    axes[1].legend()

    for backend, data in scale.get("backends", {}).items():
        by_size = sorted(data["by_size"], key=lambda m: m["targets"])
        axes[2].plot([m["targets"] for m in by_size], [m["rss"] / 2**20 for m in by_size],
                     marker="o", label=backend)  # fmt: skip
    axes[2].set_xscale("log")
    axes[2].set_xlabel("targets")
    axes[2].set_ylabel("peak RSS (MB)")
    axes[2].set_ylim(bottom=0)
    axes[2].set_title("Null probe: peak RSS against targets")
    axes[2].legend()
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    return True


def goal_table(goals: list[Goal]) -> str:
    lines = ["| goal | target | measured | met? |", "|---|---|---|---|"]
    for g in goals:
        met = "not measured" if g.met is None else "**yes**" if g.met else "**no**"
        note = f" ({g.note})" if g.note else ""
        lines.append(f"| {g.name} | {g.target} | {g.measured}{note} | {met} |")
    return "\n".join(lines)


def section(title: str, command: str, output: str, *, raw: bool = False) -> str:
    """A benchmark's output under its title: Markdown tables as they are, other
    lines (progress, a plain-text table) in a text block."""
    if raw:
        return f"## {title}\n\n`{command}`\n\n{output.strip()}\n"
    parts: list[str] = []
    plain: list[str] = []

    def flush() -> None:
        text = "\n".join(plain).strip("\n")
        if text:
            parts.extend(["", "```text", text, "```", ""])
        plain.clear()

    for line in output.strip().splitlines():
        if line.startswith("|"):
            flush()
            parts.append(line)
        else:
            plain.append(line)
    flush()
    body = "\n".join(parts).strip("\n")
    body = re.sub(r"\n{3,}", "\n\n", body)
    return f"## {title}\n\n`{command}`\n\n{body}\n"


def page(sections: list[str], goals: list[Goal], plotted: bool, args: argparse.Namespace) -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    parts = [
        "# Benchmarks\n",
        "Generated by `python benchmarks/run_all.py"
        + (" --quick" if args.quick else "")
        + f"` on {time.strftime('%Y-%m-%d %H:%M')} ({machine}). Every figure on this page "
        "comes from the same run; the ratios compare checkers measured minutes apart on the "
        "same machine, which is what counts on a shared, noisy one. Each script can also be "
        "run on its own: its command is given with its table.\n",
        "To reproduce it (nginx, dnsmasq, openssh-server, monitoring-plugins and "
        "prometheus-blackbox-exporter from Debian's packages):\n\n"
        "<!-- not run: the whole run takes about 15 minutes and loads every core -->\n"
        "```console\n$ pip install -e '.[dev,bench]'\n$ python benchmarks/run_all.py\n```\n",
        "Per-protocol details, with the methods and earlier figures:\n\n"
        "<!-- generated: benchmarks -->\n",
        "How anyprobe compares with the tools a user would otherwise pick, verdict by "
        "verdict: [anyprobe and its peers](peers.md). What is proven by tests rather than "
        "measured: [reliability](reliability.md).\n",
        "## Goals\n\n" + goal_table(goals) + "\n\n" + reasons(goals),
    ]
    if plotted:
        parts.append("![HTTP checks/s, null-probe checks/s, RSS against targets]"
                     "(img/benchmarks.png)\n")  # fmt: skip
    parts += sections
    return "\n".join(parts)


def reasons(goals: list[Goal]) -> str:
    missed = [g for g in goals if g.met is False]
    if not missed:
        return "Every goal is met in this run.\n"
    lines = ["Why the missed goals are missed (figures from this run):", ""]
    lines += [f"- **{g.name}** ({g.measured}): {g.why}" for g in missed]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmarks to leave out")
    parser.add_argument("--output", default=str(PAGE), help="the page to write")
    parser.add_argument(
        "--render", action="store_true", help="rebuild the page from the last run's outputs"
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    def run_or_load(key: str, script: str, *script_args: str) -> str:
        saved = RESULTS / f"{key}.txt"
        if args.render:
            return saved.read_text() if saved.exists() else ""
        output = run_script(script, *script_args)
        saved.write_text(output)
        return output

    quick = args.quick
    repeat = "1" if quick else "3"
    sections: list[str] = []
    outputs: dict[str, str] = {}

    def bench(key: str, title: str, script: str, *script_args: str) -> str:
        if key in args.skip:
            return ""
        output = run_or_load(key, script, *script_args)
        outputs[key] = output
        command = " ".join(["python", f"benchmarks/{script}", *script_args])
        sections.append(section(title, command, output))
        return output

    http = bench("http", "HTTP: anyprobe, the tutorial's httpx checker, aiohttp", "http_bench.py",
                 "--urls", "500" if quick else "2000", "--repeat", repeat)  # fmt: skip
    false_timeouts = bench("false-timeouts", "HTTP: false timeouts over healthy checks",
                           "http_bench.py", "--false-timeouts",
                           *(["--urls", "2000"] if quick else []))  # fmt: skip
    bench("tcp", "TCP connect: anyprobe against a plain anyio loop", "tcp_bench.py",
          *(["--rounds", "1"] if quick else []))  # fmt: skip
    bench("dns", "DNS A: anyprobe against a plain dnspython loop", "dns_bench.py",
          *(["--rounds", "1"] if quick else []))  # fmt: skip
    bench("ssh", "SSH: asyncio direct and trio through the bridge", "ssh_bench.py",
          *(["--banner", "50", "--full", "20"] if quick else []))  # fmt: skip
    null = bench("null", "Null probe: the scheduler against the bare anyio loop", "null_bench.py",
                 "--sizes", "10000", "100000", "--repeat", repeat)  # fmt: skip
    scale: dict[str, Any] = {}
    if "scale" not in args.skip:
        sizes = ["1000", "10000", "100000"] + ([] if quick else ["1000000"])
        scale_args = ["--sizes", *sizes, "--json"]
        scale = json.loads(run_or_load("scale", "scale_bench.py", *scale_args) or "{}")
        sys.path.insert(0, str(HERE))
        import scale_bench

        sections.append(section("Scale: targets and concurrency",
                                "python benchmarks/scale_bench.py --sizes " + " ".join(sizes),
                                scale_bench.markdown(scale), raw=True))  # fmt: skip
    startup: dict[str, Any] = {}
    if "startup" not in args.skip:
        startup_args = ["--repeat", "5" if quick else "20", "--json"]
        startup = json.loads(run_or_load("startup", "startup_bench.py", *startup_args) or "{}")
        import startup_bench

        sections.append(section("Start-up", "python benchmarks/startup_bench.py",
                                startup_bench.markdown(startup), raw=True))  # fmt: skip
    cold: dict[str, Any] = {}
    if "cold_start" not in args.skip:
        cold_args = ["--repeat", "5" if quick else "30", "--json"]
        cold = json.loads(run_or_load("cold_start", "cold_start_bench.py", *cold_args) or "{}")
        import cold_start_bench

        sections.append(section("Cold start", "python benchmarks/cold_start_bench.py",
                                cold_start_bench.markdown(cold), raw=True))  # fmt: skip
    rounds = ["--rounds", "1"] if quick else ["--rounds", "3"]
    bench("icmp", "ICMP echo: anyprobe against a plain socket loop", "icmp_bench.py", *rounds)
    bench("udp-ntp", "UDP and NTP: anyprobe against plain anyio loops", "udp_ntp_bench.py",
          *rounds)  # fmt: skip
    bench("grpc", "gRPC health: anyprobe against a plain h2 loop", "grpc_bench.py", *rounds)
    bench("websocket", "WebSocket: anyprobe against a plain wsproto loop", "ws_bench.py",
          *rounds)  # fmt: skip
    bench("rdap", "RDAP domain expiry: anyprobe against a plain h11 + json loop",
          "rdap_bench.py", *rounds)  # fmt: skip
    bench("heartbeat", "Embedding: the host's event loop beside anyprobe.check()",
          "heartbeat_bench.py", "--runs", "1" if quick else "3")  # fmt: skip
    if "peers" not in args.skip:
        if not args.render:
            run_script("peers.py", "--write", str(DOCS / "peers.md"))
        sections.append(
            "## Peers\n\nVerdicts of the monitoring-plugins and blackbox_exporter on the "
            "same local targets: [anyprobe and its peers](peers.md).\n"
        )

    goals = http_goals(http, false_timeouts) + null_goals(null) + scale_goals(scale)
    goals += startup_goals(startup)
    goals += plain_loop_goals(outputs)
    if cold:
        goals += [Goal(**goal) for goal in cold_start_bench.goals(cold)]
    plotted = plot(http, null, scale)
    Path(args.output).write_text(page(sections, goals, plotted, args))
    print(goal_table(goals))
    print(f"wrote {args.output}" + (f" and {PLOT}" if plotted else ""), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
