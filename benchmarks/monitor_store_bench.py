"""What the history store costs ``anyprobe serve``: the same scheduled checks
with the SQLite store and without one.

    python benchmarks/monitor_store_bench.py [--checks 10000] [--interval 30] [--duration 150]

Each side runs in a fresh subprocess: a :class:`ProbeServer` whose config has
``--checks`` null-probe ``[[check]]``\\s (a probe that only yields to the event
loop) every ``--interval`` seconds, its checks run for ``--duration`` seconds
on asyncio, once with ``[store] url = "none"`` and once with the default
SQLite file beside the config. The table gives the process's CPU time (the
store's worker thread included), the results recorded, the largest lateness
of a check (how much later than its interval after the previous run it
started) and, with the store, its size per check per day (the SQLite file
after a checkpoint, per stored result, times the results a check makes in a
day).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult


def run_side(
    checks: int, interval: float, duration: float, store: bool, probe: str = "null"
) -> dict[str, Any]:
    """One side, in this process: run the server's checks for ``duration`` seconds."""
    import anyio

    import anyprobe
    from anyprobe._serve import ProbeServer, load_serve_config

    lateness = {"max": 0.0}
    last: dict[str, float] = {}

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
            await anyio.lowlevel.checkpoint()
            return anyprobe.Outcome.ok("nothing to do")

    class Plugin:
        @anyprobe.hookimpl
        def anyprobe_register_probes(self, register: Any) -> None:
            register(NullProbe)

    directory = Path(tempfile.mkdtemp(prefix="anyprobe-store-bench-"))
    config = directory / "monitor.toml"
    lines = [] if store else ['[store]\nurl = "none"\n']
    stop_accepting = threading.Event()
    if probe == "tcp":  # a loopback port whose thread accepts and closes each connection
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]

        def accept() -> None:
            with listener:
                while not stop_accepting.is_set():  # bounded by the run's end
                    try:
                        connection, _ = listener.accept()
                    except TimeoutError:
                        continue
                    connection.close()

        threading.Thread(target=accept, daemon=True).start()
        urls = [f"tcp://127.0.0.1:{port}/?n={i}" for i in range(checks)]
    else:
        urls = [f"null://t{i}" for i in range(checks)]
    lines += [
        f'[[check]]\nname = "c{i}"\nurl = "{url}"\ninterval = {interval}\n'
        for i, url in enumerate(urls)
    ]
    config.write_text("\n".join(lines))
    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    manager.register(Plugin(), name="null")
    server = ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))
    record = server.record

    async def timed_record(target: anyprobe.Target, result: anyprobe.Result) -> None:
        # Lateness at the one result path: how much longer than the interval
        # since the check's previous result.
        now = anyio.current_time()
        previous = last.get(target.name)
        if previous is not None:
            lateness["max"] = max(lateness["max"], now - previous - interval)
        last[target.name] = now
        await record(target, result)

    server.record = timed_record  # type: ignore[method-assign]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run_checks)
            await anyio.sleep(duration)
            server.stop_checks()
        await server.aclose()

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    wall = time.perf_counter()
    anyio.run(main)
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    from prometheus_client import generate_latest

    exposition = generate_latest(server.metrics.registry).decode()
    recorded = sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("anyprobe_scheduled_checks_total")
    )
    found: dict[str, Any] = {
        "store": store,
        "cpu": cpu,
        "wall": wall,
        "recorded": recorded,
        "max_late": lateness["max"],
    }
    database = directory / "monitor.db"
    if store:
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            stored = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        size = sum(p.stat().st_size for p in directory.glob("monitor.db*"))
        found["stored"] = stored
        found["bytes"] = size
        found["bytes_per_check_day"] = size / stored * (86400 / interval) if stored else None
    stop_accepting.set()
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--probe", choices=["null", "tcp"], default="null")
    parser.add_argument("--side", choices=["store", "none"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        found = run_side(
            args.checks, args.interval, args.duration, args.side == "store", args.probe
        )
        print(json.dumps(found))
        return
    results = {}
    for side in ("none", "store"):
        proc = subprocess.run(
            [sys.executable, __file__, "--side", side, "--checks", str(args.checks),
             "--interval", str(args.interval), "--duration", str(args.duration),
             "--probe", args.probe],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    none, store = results["none"], results["store"]
    print(
        f"{args.checks} {args.probe} checks every {args.interval:g} s "
        f"for {args.duration:g} s, asyncio"
    )
    for name, side in (("no store", none), ("SQLite store", store)):
        print(
            f"{name:13} CPU {side['cpu']:7.2f} s  results {side['recorded']:8.0f}  "
            f"max lateness {side['max_late'] * 1000:7.1f} ms"
        )
    print(f"CPU ratio (store / no store): {store['cpu'] / none['cpu']:.2f}x")
    print(
        f"store: {store['stored']} results in {store['bytes'] / 2**20:.1f} MiB, "
        f"{store['bytes_per_check_day'] / 1024:.0f} KiB per check per day "
        f"at one result per {args.interval:g} s"
    )


if __name__ == "__main__":
    main()
