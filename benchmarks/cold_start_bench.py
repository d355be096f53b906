"""Cold start: one check per process, as a Nagios or Icinga host runs it.

    python benchmarks/cold_start_bench.py [--repeat 30] [--json]

Runs, in turn and round after round, each command below as a new process and
takes its wall-clock time and its CPU time (user + system, from the kernel's
accounting of the finished child):

- ``python -c "import anyio"``: the baseline the goals are stated against;
- ``anyprobe check tcp://127.0.0.1:PORT`` against a listener this script opens;
- ``anyprobe check http://127.0.0.1:PORT/`` against an HTTP server it starts;
- the same two checks on ``--backend trio``;
- monitoring-plugins' ``check_tcp`` and ``check_http`` on the same ports, where
  installed (Debian: monitoring-plugins-basic);
- ``python -c pass``, the floor every Python command pays;
- with ``--before DIR``, the four checks again with the ``anyprobe``
  package found in DIR (an earlier version, to time before and after in one
  run; build it from a commit with ``git archive COMMIT core plugins``, then
  ``core/`` as ``DIR/anyprobe`` and ``plugins/`` as ``DIR/anyprobe/plugins``).

Every server is on loopback and started here; the rounds are bounded. Each
figure is a median over the rounds, and each ratio the median of the
round-by-round ratios to ``import anyio`` measured in the same round, so a
machine that slows down or speeds up during the run moves both sides of a
ratio alike. The ratios are what count; absolute times depend on the machine.

anyprobe's own modules are read from their bytecode cache, as from an
installed wheel: ``PYTHONDONTWRITEBYTECODE`` is dropped for the commands and a
warm-up round fills the cache.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PLUGINS = Path("/usr/lib/nagios/plugins")
BASELINE = 'python -c "import anyio"'
#: The goals of issue 18, as ratios to the baseline.
GOALS = {"anyprobe check tcp://": 3.0, "anyprobe check http://": 3.5}
MAX_REPEAT = 200
#: Why a goal is missed, when it is (the Cold start section has the profile).
WHY = {
    "anyprobe check tcp://": (
        "Beside anyio, the check imports asyncio and anyio's asyncio backend, click, "
        "and anyprobe's own modules; the Cold start section has the profile."
    ),
    "anyprobe check http://": (
        "Beside what the tcp:// check imports, the HTTP probe's modules and its "
        "HTTP/1.1 parser; the Cold start section has the profile."
    ),
}


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_servers() -> Iterator[tuple[int, int]]:
    """A TCP listener (the kernel completes each handshake; nothing is read)
    and an HTTP server answering 200, both on 127.0.0.1; yields their ports."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    stop = threading.Event()

    def drain() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.close()

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threads = [
        threading.Thread(target=drain, daemon=True),
        threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield listener.getsockname()[1], web.server_address[1]
    finally:
        stop.set()
        web.shutdown()
        web.server_close()
        listener.close()
        for thread in threads:
            thread.join(timeout=5)


def commands(tcp_port: int, http_port: int, before: Path | None) -> dict[str, list[str]]:
    # The console script next to this interpreter, as an installed anyprobe runs.
    script = Path(sys.executable).parent / "anyprobe"
    found = str(script) if script.exists() else shutil.which("anyprobe")
    anyprobe = [found] if found else [sys.executable, "-m", "anyprobe"]
    tcp, web = f"tcp://127.0.0.1:{tcp_port}", f"http://127.0.0.1:{http_port}/"
    plan = {
        BASELINE: [sys.executable, "-c", "import anyio"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "anyprobe check tcp://": [*anyprobe, "check", tcp],
        "anyprobe check http://": [*anyprobe, "check", web],
        "anyprobe check --backend trio tcp://": [*anyprobe, "check", "--backend", "trio", tcp],
        "anyprobe check --backend trio http://": [*anyprobe, "check", "--backend", "trio", web],
    }
    if before is not None:
        launch = (
            f"import sys; sys.path.insert(0, {str(before)!r}); "
            "from anyprobe._cli import main; main()"
        )
        plan["before: anyprobe check tcp://"] = [sys.executable, "-c", launch, "check", tcp]
        plan["before: anyprobe check http://"] = [sys.executable, "-c", launch, "check", web]
        for name, url in (("tcp", tcp), ("http", web)):
            trio = [sys.executable, "-c", launch, "check", "--backend", "trio", url]
            plan[f"before: anyprobe check --backend trio {name}://"] = trio
    if (PLUGINS / "check_tcp").exists():
        plan["check_tcp"] = [str(PLUGINS / "check_tcp"), "-H", "127.0.0.1", "-p", str(tcp_port)]
    if (PLUGINS / "check_http").exists():
        plan["check_http"] = [
            str(PLUGINS / "check_http"), "-I", "127.0.0.1", "-p", str(http_port), "-u", "/",
        ]  # fmt: skip
    return plan


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit status of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def measure(repeat: int, before: Path | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("ANYPROBE_LOAD_PLUGINS", None)
    with local_servers() as (tcp_port, http_port):
        plan = commands(tcp_port, http_port, before)
        wall: dict[str, list[float]] = {name: [] for name in plan}
        cpu: dict[str, list[float]] = {name: [] for name in plan}
        statuses: dict[str, set[int]] = {name: set() for name in plan}
        for command in plan.values():  # warm-up: bytecode caches, page cache
            run_once(command, env)
        for _ in range(repeat):
            for name, command in plan.items():
                seconds, cpu_seconds, status = run_once(command, env)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
                statuses[name].add(status)
    rows = {}
    for name in plan:
        rows[name] = {
            "wall_ms": statistics.median(wall[name]) * 1000,
            "cpu_ms": statistics.median(cpu[name]) * 1000,
            "wall_ratio": statistics.median(
                a / b for a, b in zip(wall[name], wall[BASELINE], strict=True)
            ),
            "cpu_ratio": statistics.median(
                a / b for a, b in zip(cpu[name], cpu[BASELINE], strict=True)
            ),
            "exit_status": sorted(statuses[name]),
        }
    return {"repeat": repeat, "python": sys.version.split()[0], "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Median of {report['repeat']} rounds, the commands in turn in each round; "
        f"ratios are the median of each round's ratio to `{BASELINE}`.",
        "",
        f"| command | wall | x `{BASELINE}` | CPU | x `{BASELINE}` (CPU) | goal | exit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["rows"].items():
        goal = GOALS.get(name)
        goal_text = f"<= {goal:g}x" if goal else ""
        lines.append(
            f"| `{name}` | {row['wall_ms']:.0f} ms | {row['wall_ratio']:.2f} "
            f"| {row['cpu_ms']:.0f} ms | {row['cpu_ratio']:.2f} | {goal_text} "
            f"| {','.join(map(str, row['exit_status']))} |"
        )
    return "\n".join(lines)


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of :data:`GOALS` with this report's figure (CPU-time ratio, the
    one a loaded machine disturbs least): fields of run_all.py's ``Goal``."""
    found = []
    for name, goal in GOALS.items():
        row = report.get("rows", {}).get(name)
        if row is None:
            continue
        ratio = row["cpu_ratio"]
        found.append(
            {
                "name": f"Cold start, one {name.rpartition(' ')[2]} check",
                "target": f"`{name}` <= {goal:g}x `{BASELINE}`",
                "measured": f"{ratio:.2f}x CPU, {row['wall_ratio']:.2f}x wall",
                "met": ratio <= goal,
                "why": f"over by {ratio / goal - 1:.0%}. {WHY[name]}",
            }
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=30, help=f"rounds (1 to {MAX_REPEAT})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="time the anyprobe package in DIR as well"
    )
    args = parser.parse_args()
    if args.before is not None and not (args.before / "anyprobe" / "_cli.py").exists():
        parser.error(f"--before: no anyprobe package in {args.before}")
    if not 1 <= args.repeat <= MAX_REPEAT:
        parser.error(f"--repeat must be between 1 and {MAX_REPEAT}")
    report = measure(args.repeat, args.before)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
