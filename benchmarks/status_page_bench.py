"""The status page and ``/api/v1/checks`` of ``anyprobe serve`` for 1,000 checks.

    python benchmarks/status_page_bench.py [--checks 1000] [--days 30] [--every 3600]
        [--requests 50] [--backend asyncio]

Serves a config of ``--checks`` scheduled checks (ten groups, loopback TCP
targets that accept) over a history store holding ``--days`` days of results,
one every ``--every`` seconds per check, with a few incidents; then asks for
``/`` and ``/api/v1/checks`` ``--requests`` times each over loopback HTTP and
prints the median and p95 answer times, the page's weight (as sent, gzip, and
uncompressed), and the cold first answer (every check's history read from the
store before the page could be drawn; later answers draw from the view's
cache and refresh it after answering).

With ``--store memory`` (the default) the store is the in-memory
HistoryStore of the tests (tests/memory_store.py), filled directly: the
figures are the page's own cost (the view, the templates, the JSON), without a
database's. With ``--store sqlite`` the history is written to a SQLite file
first (the store ``anyprobe serve`` keeps by default) and the server reads it
from there, as it would in production.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import queue
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anyprobe import PluginManager
from anyprobe._model import Status
from anyprobe._serve_page import RowCache, render_overview
from anyprobe._serve_view import StatusView
from anyprobe._store import Record
from tests.memory_store import MemoryStore, running


class Collect:
    """Stands for a store while :func:`fill` runs: keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        self.records.append(record)


async def fill_sqlite(path: Path, records: list[Record]) -> None:
    """Write ``records`` to a SQLite store at ``path``, as the server's writer does."""
    from anyprobe._store_backends import open_store

    store = open_store(f"sqlite:///{path}", path.parent)
    try:
        for start in range(0, len(records), 5000):
            await store.write(records[start : start + 5000])
    finally:
        await store.aclose()


@asynccontextmanager
async def serving_config(manager: PluginManager, config: Path) -> AsyncIterator[tuple[str, Any]]:
    """``anyprobe serve CONFIG`` in this event loop, with the store its config names."""
    from anyprobe._serve import ProbeServer, load_serve_config
    from tests.servers.push import serving

    server = ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))
    async with serving(server) as url:
        yield url, server


def fill(
    store: MemoryStore | Collect, names: list[str], days: float, every: float, now: float
) -> int:
    """``days`` of results for each check, one every ``every`` s; returns how many."""
    rng = random.Random(16)
    phases_ok = {"resolve": 0.0002, "connect": 0.0011}
    count = 0
    for name in names:
        at = now - days * 86400
        outage = now - rng.uniform(0, days * 86400)
        while at < now - 60:
            down = outage <= at < outage + 3 * every
            store.add(
                Record(
                    check=name,
                    at=at,
                    status=Status.CRITICAL if down else Status.OK,
                    summary="connection refused" if down else "connected",
                    duration=rng.uniform(0.0008, 0.004),
                    phases=phases_ok,
                    error="ConnectionRefusedError" if down else None,
                )
            )
            count += 1
            at += every
    return count


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--every", type=float, default=3600, help="seconds between results")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--store", default="memory", choices=["memory", "sqlite"])
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    names = [f"service-{i:04d}" for i in range(args.checks)]
    tmp = Path(tempfile.mkdtemp(prefix="status-bench-"))
    config = tmp / "serve.toml"
    database = tmp / "history.db"
    store_table = f'[store]\nurl = "sqlite:///{database}"\n\n' if args.store == "sqlite" else ""
    config.write_text(
        '[serve]\ngroup_by = "team"\n\n'
        + store_table
        + "".join(
            f'[[check]]\nname = "{name}"\nurl = "tcp://127.0.0.1:{port}"\n'
            f'interval = {args.every:g}\nlabels = {{ team = "team-{i % 10}" }}\n\n'
            for i, name in enumerate(names)
        )
    )
    store: MemoryStore | None = None
    started = time.perf_counter()
    if args.store == "sqlite":
        collected = Collect()
        records = fill(collected, names, args.days, args.every, time.time())
        anyio.run(fill_sqlite, database, collected.records)
        del collected
        where = f"SQLite, {database.stat().st_size / 2**20:.0f} MiB"
    else:
        store = MemoryStore()
        records = fill(store, names, args.days, args.every, time.time())
        where = "in-memory store"
        # A real store keeps its records in a database, not in this process: the
        # garbage collector should not walk the in-memory store's million objects.
        gc.freeze()
    print(
        f"history: {records:,} records for {args.checks} checks over {args.days:g} days "
        f"({where}, filled in {time.perf_counter() - started:.1f} s)"
    )

    answers: queue.Queue[object] = queue.Queue()
    stop = threading.Event()

    async def serve_it() -> None:
        manager = PluginManager()
        manager.load_entrypoints(autoload=False)
        context = (
            running(manager, config, store)
            if store is not None
            else serving_config(manager, config)
        )
        async with context as (url, server):
            for _ in range(6000):  # bounded: until every check ran once
                if len(server.latest) == len(names):
                    break
                await anyio.sleep(0.01)
            answers.put(url)
            answers.put(server)
            await anyio.to_thread.run_sync(stop.wait)

    thread = threading.Thread(target=lambda: anyio.run(serve_it, backend=args.backend))
    thread.start()
    try:
        url = answers.get(timeout=300)
        server = answers.get(timeout=300)
        with httpx.Client(timeout=120) as client:
            html = {"accept": "text/html", "accept-encoding": "gzip"}
            began = time.perf_counter()
            first = client.get(f"{url}/", headers=html)
            cold = time.perf_counter() - began
            assert first.status_code == 200, first.status_code
            rows = first.text.count("<tr data-check=")
            assert rows == args.checks, rows
            figures = {}
            for path, headers in (("/", html), ("/api/v1/checks", {"accept-encoding": "gzip"})):
                times = []
                sent = raw = 0
                for _ in range(args.requests):
                    began = time.perf_counter()
                    response = client.get(f"{url}{path}", headers=headers)
                    times.append(time.perf_counter() - began)
                    assert response.status_code == 200
                    raw = len(response.content)
                    sent = int(response.headers.get("content-length", raw))
                zipped = len(gzip.compress(response.content, 5))
                figures[path] = (
                    statistics.median(times),
                    percentile(times, 0.95),
                    sent,
                    raw,
                    zipped,
                )
        # The server's own work per page, apart from HTTP and the client: the
        # view and the template, then gzip, timed by the CPU of this thread too
        # (less sensitive than wall time to the other processes of a shared machine).
        view = StatusView(server)
        rows = RowCache()  # as the server keeps the rows it drew
        anyio.run(view.overview)
        walls, cpus = [], []
        for _ in range(args.requests):
            wall, cpu = time.perf_counter(), time.thread_time()

            async def draw() -> bytes:
                page = render_overview(await view.overview(), rows=rows)
                return gzip.compress(page.encode(), 5)

            anyio.run(draw)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
    finally:
        stop.set()
        thread.join(120)
        listener.close()

    print(
        f"backend {args.backend}, {args.store} store; "
        f"first page, cold (every history read): {cold * 1000:.0f} ms"
    )
    print(
        f"{'endpoint':<16} {'median':>9} {'p95':>9} {'sent':>10} {'uncompressed':>13} {'gzip':>9}"
    )
    for path, (median, p95, sent, raw, zipped) in figures.items():
        print(
            f"{path:<16} {median * 1000:6.0f} ms {p95 * 1000:6.0f} ms "
            f"{sent / 1024:6.0f} KiB {raw / 1024:9.0f} KiB {zipped / 1024:5.0f} KiB"
        )
    print(
        f"page drawn in process (view + template + gzip): wall median "
        f"{statistics.median(walls) * 1000:.0f} ms, p95 {percentile(walls, 0.95) * 1000:.0f} ms; "
        f"CPU median {statistics.median(cpus) * 1000:.0f} ms, "
        f"p95 {percentile(cpus, 0.95) * 1000:.0f} ms"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
