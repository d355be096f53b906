"""HTTP checks per second: anyprobe against the tutorial's httpx health checker
and aiohttp checkers (a fresh connection per check, and keep-alive), on a
loopback nginx.

    python benchmarks/http_bench.py [--urls 2000] [--concurrency 100] [--repeat 3]
        [--backends asyncio uvloop trio] [--checkers NAME...] [--h11] [--before DIR]
    python benchmarks/http_bench.py --false-timeouts     # 20,000 checks at c=100 and c=1,000

``--repeat`` runs every checker once per round, in turn, and reports the
median of the rounds. ``--h11`` runs anyprobe's checkers again with
``ANYPROBE_HTTP_PARSER=h11`` (rows ``NAME/h11``: httptools off); ``--before
DIR`` runs them again with the ``anyprobe`` package found in DIR (an earlier
version, e.g. ``git archive`` of a commit laid out as ``DIR/anyprobe`` with
``plugins/`` inside: rows ``before:NAME``), in the same rounds.
``--false-timeouts`` runs with the speed-ups on (uvloop for asyncio,
httptools) and off (plain asyncio, h11).

nginx (``apt-get install nginx``) is started with a temporary config on a free
loopback port and stopped at the end. Each measurement runs in a fresh
subprocess, on asyncio and on trio, over the same distinct URLs
(``/check/0`` ... ``/check/1999``); the best of ``--repeat`` runs is kept.
Every checker counts the checks that did not come back healthy: on a healthy
local server that count must be 0 (a false timeout is a defect). "client CPU
per check" is the client's CPU time per check in its timed part (for the CLI
the whole command's, start-up included); "user CPU, whole process" is the
user CPU time of the checker's whole process, interpreter start and imports
included. Other jobs on a busy machine disturb both much less than checks/s.

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
import importlib.util
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


#: Checkers that are anyprobe's, which ``--before`` and ``--h11`` run again.
ANYPROBE_CHECKERS = ("anyprobe-api", "anyprobe-cli", "anyprobe-reuse")


def variant(checker: str) -> tuple[str, dict[str, str]]:
    """``before:NAME`` (anyprobe from ``--before DIR``) and ``NAME/h11`` (httptools
    off) as the base checker and the environment that makes them so."""
    env: dict[str, str] = {}
    if checker.endswith("/h11"):
        checker = checker.removesuffix("/h11")
        env["ANYPROBE_HTTP_PARSER"] = "h11"
    if checker.startswith("before:"):
        checker = checker.removeprefix("before:")
        env["HTTP_BENCH_BEFORE"] = str(BEFORE[0])
    return checker, env


#: ``--before DIR``: given to the ``before:`` checkers only (through their environment).
BEFORE: list[Path | None] = [None]


def measure_cli(
    url_file: Path, count: int, concurrency: int, backend: str, env: dict[str, str]
) -> tuple[float, int, float, float]:
    out = url_file.with_suffix(f".{backend}.jsonl")
    before_dir = env.get("HTTP_BENCH_BEFORE")
    launch = [sys.executable, "-m", "anyprobe"]
    if before_dir:
        code = (
            f"import sys; sys.path.insert(0, {before_dir!r}); "
            "from anyprobe._cli import main; main()"
        )
        launch = [sys.executable, "-c", code]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [
            *launch,
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
        env={**os.environ, **env},
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    user = after.ru_utime - before.ru_utime
    ok = sum(1 for line in out.read_text().splitlines() if json.loads(line)["status"] == "ok")
    return elapsed, count - ok, cpu, user


def measure(
    checker: str, url_file: Path, concurrency: int, backend: str, env: dict[str, str] | None = None
) -> tuple[float, int, float, float]:
    """Run one checker in a fresh interpreter: (seconds, unhealthy count, CPU
    seconds of the timed part, user CPU seconds of the whole process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", checker, str(url_file), str(concurrency), backend],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime
    elapsed, bad, cpu = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(elapsed), int(bad), float(cpu), user


def child(checker: str, url_file: str, concurrency: int, backend: str) -> None:
    before_dir = os.environ.get("HTTP_BENCH_BEFORE")
    if before_dir:
        sys.path.insert(0, before_dir)
    urls = Path(url_file).read_text().split()
    elapsed, bad = CHECKERS[checker](urls, concurrency, backend)
    print(json.dumps([elapsed, bad, CPU_USED[0]]))


def count_false_timeouts(count: int, backends: list[str], speedups: list[str]) -> None:
    """A health checker must never call a healthy endpoint down: count it, with
    the speed-ups on (uvloop on asyncio, httptools) and off (plain asyncio, h11)."""
    with tempfile.TemporaryDirectory(prefix="anyprobe-http-bench-") as tmp:
        prefix = Path(tmp)
        nginx, port = start_nginx(prefix, 1)
        try:
            url_file = prefix / "urls.txt"
            url_file.write_text(
                "".join(f"http://127.0.0.1:{port}/check/{i}\n" for i in range(count))
            )
            print("| backend | loop | parser | concurrency | checks | unhealthy | checks/s |")
            print("|---|---|---|---:|---:|---:|---:|")
            # asyncio's rows run on uvloop with the speed-ups on and on plain
            # asyncio with them off: "uvloop" adds nothing of its own here.
            for backend in dict.fromkeys("asyncio" if b == "uvloop" else b for b in backends):
                for mode in speedups:
                    loop = backend
                    if backend == "asyncio" and mode == "on":
                        loop = "uvloop"
                    parser = "httptools" if mode == "on" else "h11"
                    env = {"ANYPROBE_HTTP_PARSER": parser}
                    for concurrency in (100, 1000):
                        elapsed, bad, _, _ = measure(
                            "anyprobe-api", url_file, concurrency, loop, env
                        )
                        print(
                            f"| {backend} | {loop} | {parser} | {concurrency} | {count} "
                            f"| {bad} | {count / elapsed:.0f} |",
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
    parser.add_argument(
        "--speedups", nargs="+", default=["on", "off"], choices=["on", "off"],
        help="with --false-timeouts: run with uvloop and httptools (on), without (off)",
    )  # fmt: skip
    parser.add_argument(
        "--checkers", nargs="+", metavar="NAME",
        help="only these checkers (default: all that apply to the backend)",
    )  # fmt: skip
    parser.add_argument(
        "--before", type=Path, metavar="DIR",
        help="also run anyprobe's checkers with the anyprobe package found in DIR "
        "(an earlier version: rows 'before:NAME'), in the same rounds",
    )  # fmt: skip
    parser.add_argument(
        "--h11", action="store_true",
        help="also run anyprobe's checkers with ANYPROBE_HTTP_PARSER=h11 (rows 'NAME/h11')",
    )  # fmt: skip
    args = parser.parse_args()
    if args.false_timeouts:
        count = args.urls if args.urls != 2000 else 20_000
        count_false_timeouts(count, args.backends, args.speedups)
        return
    if args.before is not None:
        if not (args.before / "anyprobe" / "_cli.py").exists():
            parser.error(f"--before: no anyprobe package in {args.before}")
        BEFORE[0] = args.before.resolve()
    wanted = {checker for backend in args.backends for checker in plan_for(backend, args)}
    if any(c.startswith("aiohttp") for c in wanted) and not importlib.util.find_spec("aiohttp"):
        parser.error("the aiohttp checkers need aiohttp: pip install -e '.[bench]'")

    with tempfile.TemporaryDirectory(prefix="anyprobe-http-bench-") as tmp:
        prefix = Path(tmp)
        nginx, port = start_nginx(prefix, args.nginx_workers)
        try:
            url_file = prefix / "urls.txt"
            url_file.write_text(
                "".join(f"http://127.0.0.1:{port}/check/{i}\n" for i in range(args.urls))
            )
            plans = {backend: plan_for(backend, args) for backend in args.backends}
            runs: dict[tuple[str, str], list[tuple[float, int, float, float]]] = {}
            # Rounds: every checker once per round, in turn, so that a busy
            # spell on the machine falls on all of them alike.
            for round_number in range(args.repeat):
                for backend, plan in plans.items():
                    for checker in plan:
                        base, env = variant(checker)
                        if base == "anyprobe-cli":
                            run = measure_cli(url_file, args.urls, args.concurrency, backend, env)
                        else:
                            run = measure(base, url_file, args.concurrency, backend, env)
                        runs.setdefault((backend, checker), []).append(run)
                        print(
                            f"round {round_number + 1} {backend:8} {checker:26} "
                            f"{args.urls / run[0]:8.0f} checks/s  unhealthy {run[1]}  "
                            f"{run[2] / args.urls * 1e6:5.0f} us CPU/check  user {run[3]:.2f} s",
                            flush=True,
                        )
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    report(runs, args)


def plan_for(backend: str, args: argparse.Namespace) -> list[str]:
    """The checkers run on ``backend`` (aiohttp runs on asyncio and uvloop only)."""
    plan = ["anyprobe-api", "anyprobe-cli", "tutorial-httpx"]
    if backend != "trio":
        plan.append("aiohttp-fresh")
    plan.append("anyprobe-reuse")
    if backend != "trio":
        plan.append("aiohttp-keepalive")
    plan.append("anyio-h11-keepalive")
    if args.checkers:
        plan = [c for c in plan if c in args.checkers]
    extra = [c for c in plan if c in ANYPROBE_CHECKERS]
    if args.h11:
        plan += [f"{c}/h11" for c in extra]
    if args.before is not None:
        plan += [f"before:{c}" for c in extra]
    return plan


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(
    runs: dict[tuple[str, str], list[tuple[float, int, float, float]]], args: argparse.Namespace
) -> None:
    """Medians over the rounds; ratios to aiohttp on the same loop (uvloop's
    aiohttp for uvloop, asyncio's for asyncio and trio)."""
    rate = {key: args.urls / median([r[0] for r in found]) for key, found in runs.items()}
    cpu = {key: median([r[2] for r in found]) / args.urls * 1e6 for key, found in runs.items()}
    user = {key: median([r[3] for r in found]) for key, found in runs.items()}

    def peer(backend: str, name: str) -> tuple[str, str] | None:
        for loop in (backend, "asyncio"):
            if (loop, name) in rate:
                return loop, name
        return None

    print()
    print(f"{args.urls} URLs, concurrency {args.concurrency}, median of {args.repeat} rounds")
    print(
        "| backend | checker | checks/s | x aiohttp-fresh | x aiohttp-keepalive | unhealthy "
        "| client CPU per check | user CPU, whole process | aiohttp-fresh user CPU / this |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (backend, checker), found in runs.items():
        fresh, keepalive = peer(backend, "aiohttp-fresh"), peer(backend, "aiohttp-keepalive")
        bad = max(r[1] for r in found)
        key = (backend, checker)
        vs_fresh = f"{rate[key] / rate[fresh]:.2f}" if fresh else "-"
        vs_keep = f"{rate[key] / rate[keepalive]:.2f}" if keepalive else "-"
        vs_user = f"{user[fresh] / user[key]:.2f}" if fresh else "-"
        print(
            f"| {backend} | {checker} | {rate[key]:.0f} | {vs_fresh} | {vs_keep} | {bad} "
            f"| {cpu[key]:.0f} µs | {user[key]:.2f} s | {vs_user} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        main()
