"""HTTP checks per second: anyprobe against the tutorial's httpx health checker
and aiohttp checkers (a fresh connection per check, and keep-alive), on a
loopback nginx.

    python benchmarks/http_bench.py [--urls 2000] [--concurrency 100] [--repeat 3]
    python benchmarks/http_bench.py --false-timeouts     # 20,000 checks at c=100 and c=1,000

nginx (``apt-get install nginx``) is started with a temporary config on a free
loopback port and stopped at the end. Each measurement runs in a fresh
subprocess, on asyncio and on trio, over the same distinct URLs
(``/check/0`` ... ``/check/1999``); the best of ``--repeat`` runs is kept.
Every checker counts the checks that did not come back healthy: on a healthy
local server that count must be 0 (a false timeout is a defect). The last
column is the client's CPU time per check (the least of the runs; for the
CLI the whole command's, start-up included), which other jobs on a busy
machine disturb much less than checks/s.

Checkers:

- ``anyprobe-api``: ``anyprobe.check(urls, concurrency=C)``, fresh connection
  per check, every phase timed;
- ``anyprobe-cli``: ``anyprobe check -i FILE -c C -r jsonl=/dev/null``, the
  whole command, start-up included;
- ``tutorial-httpx``: the tutorial's pattern, one shared ``httpx.AsyncClient``,
  a task per URL, a semaphore, ``fail_after``;
- ``aiohttp-fresh``: aiohttp with ``force_close`` (one connection per check),
  a semaphore; asyncio only;
- ``anyprobe-reuse``: ``anyprobe.check(urls, concurrency=C,
  options={"reuse_connections": True})``, idle connections reused across checks;
- ``aiohttp-keepalive``: aiohttp's default connector (keep-alive, at most C
  connections), a semaphore; asyncio only;
- ``anyio-h11-keepalive``: the floor under ``anyprobe-reuse``: C worker tasks,
  each with one kept-alive connection, speaking h11 over anyio streams, with
  no scheduler, timing or result records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT = 10.0

NGINX_CONF = """
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


#: CPU seconds of the timed part of a checker run in this process (see started()).
CPU_USED = [0.0]


def started() -> float:
    """Start timing a checker: wall clock returned, this process's CPU time kept."""
    CPU_USED[0] = time.process_time()
    return time.perf_counter()


def stopped(start: float) -> float:
    """Wall-clock seconds since ``start``; the CPU seconds go to ``CPU_USED``."""
    CPU_USED[0] = time.process_time() - CPU_USED[0]
    return time.perf_counter() - start


def run_loop(main: Any, backend: str) -> Any:
    """``main()`` on ``backend``: asyncio, uvloop (asyncio on uvloop) or trio."""
    import anyio

    if backend == "trio":
        return anyio.run(main, backend="trio")
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": backend == "uvloop"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(prefix: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, workers=workers))
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, port
        except OSError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("nginx did not start")


# -- the checkers, each run in its own subprocess --------------------------------------


def run_anyprobe_api(
    urls: list[str], concurrency: int, backend: str, reuse: bool = False
) -> tuple[float, int]:

    import anyprobe
    import anyprobe._api

    # Imports happen outside the timed part, as httpx's and aiohttp's do for
    # the other checkers; loading the plugins (a manager per run) stays inside.
    anyprobe.PluginManager().load_entrypoints()

    async def main() -> tuple[float, int]:
        start = started()
        options = {"reuse_connections": True} if reuse else None
        results = await anyprobe.check(
            urls, concurrency=concurrency, timeout=TIMEOUT, options=options
        )
        elapsed = stopped(start)
        bad = sum(1 for r in results if r.status is not anyprobe.Status.OK)
        return elapsed, bad + len(urls) - len(results)

    return run_loop(main, backend)


def run_tutorial(urls: list[str], concurrency: int, backend: str) -> tuple[float, int]:
    import anyio
    import httpx

    async def main() -> tuple[float, int]:
        results: list[bool] = []
        semaphore = anyio.Semaphore(concurrency)

        async def check_url(client: httpx.AsyncClient, url: str) -> None:
            async with semaphore:
                try:
                    with anyio.fail_after(TIMEOUT):
                        response = await client.get(url, follow_redirects=True)
                    results.append(200 <= response.status_code < 400)
                except Exception:
                    results.append(False)

        start = started()
        async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
            for url in urls:
                tg.start_soon(check_url, client, url)
        return stopped(start), results.count(False)

    return run_loop(main, backend)


def run_anyprobe_reuse(urls: list[str], concurrency: int, backend: str) -> tuple[float, int]:
    return run_anyprobe_api(urls, concurrency, backend, reuse=True)


def run_aiohttp(
    urls: list[str], concurrency: int, backend: str, keep_alive: bool = False
) -> tuple[float, int]:
    import asyncio

    import aiohttp

    async def main() -> tuple[float, int]:
        semaphore = asyncio.Semaphore(concurrency)
        results: list[bool] = []
        connector = aiohttp.TCPConnector(force_close=not keep_alive, limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)

        async def check_url(session: aiohttp.ClientSession, url: str) -> None:
            async with semaphore:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        results.append(200 <= response.status < 400)
                except Exception:
                    results.append(False)

        start = started()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(check_url(session, url) for url in urls))
        return stopped(start), results.count(False)

    return run_loop(main, backend)


def run_aiohttp_keepalive(urls: list[str], concurrency: int, backend: str) -> tuple[float, int]:
    return run_aiohttp(urls, concurrency, backend, keep_alive=True)


def run_h11_keepalive(urls: list[str], concurrency: int, backend: str) -> tuple[float, int]:
    from urllib.parse import urlsplit

    import anyio
    import h11

    async def main() -> tuple[float, int]:
        todo = iter(urls)
        results: list[bool] = []

        async def worker() -> None:
            stream: anyio.abc.SocketStream | None = None
            connection = h11.Connection(h11.CLIENT)
            for url in todo:
                parts = urlsplit(url)
                try:
                    with anyio.fail_after(TIMEOUT):
                        if stream is None:
                            stream = await anyio.connect_tcp(parts.hostname or "", parts.port or 80)
                            connection = h11.Connection(h11.CLIENT)
                        request = h11.Request(
                            method="GET",
                            target=parts.path,
                            headers=[("Host", parts.netloc), ("Accept", "*/*")],
                        )
                        await stream.send(
                            connection.send(request) + connection.send(h11.EndOfMessage())
                        )
                        status = 0
                        while True:
                            event = connection.next_event()
                            if event is h11.NEED_DATA:
                                connection.receive_data(await stream.receive())
                            elif isinstance(event, h11.Response):
                                status = event.status_code
                            elif isinstance(event, h11.EndOfMessage):
                                break
                    results.append(200 <= status < 400)
                    connection.start_next_cycle()
                except Exception:
                    results.append(False)
                    if stream is not None:
                        await stream.aclose()
                    stream = None
            if stream is not None:
                await stream.aclose()

        start = started()
        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, len(urls))):
                tg.start_soon(worker)
        return stopped(start), results.count(False)

    return run_loop(main, backend)


CHECKERS = {
    "anyprobe-api": run_anyprobe_api,
    "tutorial-httpx": run_tutorial,
    "aiohttp-fresh": run_aiohttp,
    "anyprobe-reuse": run_anyprobe_reuse,
    "aiohttp-keepalive": run_aiohttp_keepalive,
    "anyio-h11-keepalive": run_h11_keepalive,
}


def measure_cli(
    url_file: Path, count: int, concurrency: int, backend: str
) -> tuple[float, int, float]:
    out = url_file.with_suffix(f".{backend}.jsonl")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "anyprobe",
            "check",
            "-i",
            str(url_file),
            "-c",
            str(concurrency),
            "--backend",
            backend,
            "-t",
            str(TIMEOUT),
            "--no-progress",
            "-r",
            f"jsonl={out}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    ok = sum(1 for line in out.read_text().splitlines() if json.loads(line)["status"] == "ok")
    return elapsed, count - ok, cpu


def measure(
    checker: str, url_file: Path, concurrency: int, backend: str
) -> tuple[float, int, float]:
    """Run one checker in a fresh interpreter; (seconds, unhealthy count, CPU seconds)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", checker, str(url_file), str(concurrency), backend],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed, bad, cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(elapsed), int(bad), float(cpu)


def child(checker: str, url_file: str, concurrency: int, backend: str) -> None:
    urls = Path(url_file).read_text().split()
    elapsed, bad = CHECKERS[checker](urls, concurrency, backend)
    print(json.dumps([elapsed, bad, CPU_USED[0]]))


def count_false_timeouts(count: int, backends: list[str]) -> None:
    """A health checker must never call a healthy endpoint down: count it."""
    with tempfile.TemporaryDirectory(prefix="anyprobe-http-bench-") as tmp:
        prefix = Path(tmp)
        nginx, port = start_nginx(prefix, 1)
        try:
            url_file = prefix / "urls.txt"
            url_file.write_text(
                "".join(f"http://127.0.0.1:{port}/check/{i}\n" for i in range(count))
            )
            print("| backend | concurrency | checks | unhealthy | checks/s |")
            print("|---|---:|---:|---:|---:|")
            for backend in backends:
                for concurrency in (100, 1000):
                    elapsed, bad, _ = measure("anyprobe-api", url_file, concurrency, backend)
                    print(
                        f"| {backend} | {concurrency} | {count} | {bad} | {count / elapsed:.0f} |",
                        flush=True,
                    )
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument(
        "--backends", nargs="+", default=["asyncio", "uvloop", "trio"],
        help="asyncio (plain), uvloop (asyncio on uvloop; aiohttp too), trio",
    )  # fmt: skip
    parser.add_argument(
        "--false-timeouts",
        action="store_true",
        help="instead: count unhealthy results of anyprobe over --urls (default 20,000) "
        "healthy URLs at concurrency 100 and 1,000 (the count must be 0)",
    )
    args = parser.parse_args()
    if args.false_timeouts:
        count_false_timeouts(args.urls if args.urls != 2000 else 20_000, args.backends)
        return

    with tempfile.TemporaryDirectory(prefix="anyprobe-http-bench-") as tmp:
        prefix = Path(tmp)
        nginx, port = start_nginx(prefix, args.nginx_workers)
        try:
            url_file = prefix / "urls.txt"
            url_file.write_text(
                "".join(f"http://127.0.0.1:{port}/check/{i}\n" for i in range(args.urls))
            )
            rows: list[tuple[str, str, float, int, float]] = []
            for backend in args.backends:
                plan = ["anyprobe-api", "anyprobe-cli", "tutorial-httpx"]
                if backend != "trio":
                    plan.append("aiohttp-fresh")
                plan.append("anyprobe-reuse")
                if backend != "trio":
                    plan.append("aiohttp-keepalive")
                plan.append("anyio-h11-keepalive")
                for checker in plan:
                    best, worst_bad, least_cpu = float("inf"), 0, float("inf")
                    for _ in range(args.repeat):
                        if checker == "anyprobe-cli":
                            elapsed, bad, cpu = measure_cli(
                                url_file, args.urls, args.concurrency, backend
                            )
                        else:
                            elapsed, bad, cpu = measure(
                                checker, url_file, args.concurrency, backend
                            )
                        best = min(best, elapsed)
                        worst_bad = max(worst_bad, bad)
                        least_cpu = min(least_cpu, cpu)
                    micros = least_cpu / args.urls * 1e6
                    rows.append((backend, checker, args.urls / best, worst_bad, micros))
                    print(
                        f"{backend:8} {checker:19} {args.urls / best:8.0f} checks/s"
                        f"  unhealthy {worst_bad}  {micros:5.0f} us CPU/check",
                        flush=True,
                    )
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)

    rate = {(b, c): r for b, c, r, _, _ in rows}
    aiohttp_rate = rate.get(("asyncio", "aiohttp-fresh"))
    keepalive_rate = rate.get(("asyncio", "aiohttp-keepalive"))
    print()
    print(f"{args.urls} URLs, concurrency {args.concurrency}, best of {args.repeat}")
    print(
        "| backend | checker | checks/s | x tutorial | x aiohttp-fresh "
        "| x aiohttp-keepalive | unhealthy | client CPU per check |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for backend, checker, value, bad, micros in rows:
        tutorial = rate[(backend, "tutorial-httpx")]
        vs_aiohttp = f"{value / aiohttp_rate:.2f}" if aiohttp_rate else "-"
        vs_keepalive = f"{value / keepalive_rate:.2f}" if keepalive_rate else "-"
        print(
            f"| {backend} | {checker} | {value:.0f} | {value / tutorial:.2f} "
            f"| {vs_aiohttp} | {vs_keepalive} | {bad} | {micros:.0f} µs |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        main()
