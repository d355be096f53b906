"""``/probe`` requests per second: anyprobe serve next to blackbox_exporter.

    python benchmarks/serve_bench.py [--duration 3] [--connections 16] [--rounds 7]

Starts, on loopback, an nginx target answering 200, Debian's
``prometheus-blackbox-exporter`` with an ``http_2xx`` module, and ``anyprobe
serve`` on each backend with its built-in ``http_2xx``; then drives each
server's ``/probe?target=<nginx>&module=http_2xx`` with the same load
generator (wrk when installed, else an anyio + httpx client with a fixed
number of connections), for the same time, rotating the order each round.
Every server is started and stopped here, by PID. The table gives the median
requests/s and the median (and range) of each round's ratio to blackbox_exporter.
``--servers`` picks anyprobe's HTTP servers (builtin, hypercorn, uvicorn; uvicorn
on asyncio only);
``--baseline-source DIR`` adds an anyprobe from another source tree (say, a
checkout of main) per backend, as "before"; ``--workers 1 2`` measures each
anyprobe with ``serve --workers 1`` and ``--workers 2`` (CPU time: the parent
and its workers together).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

START_LIMIT = 20.0

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "UP\\n"; }}
    }}
}}
"""

BLACKBOX_CONF = """
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {START_LIMIT:g} s")


def answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Servers:
    """Every process this benchmark starts, stopped by PID at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        #: The PID of the process serving each base URL.
        self.pids: dict[str, int] = {}

    def start(self, command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, **kwargs)  # type: ignore[call-overload]
        self.processes.append(process)
        return process  # type: ignore[no-any-return]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(START_LIMIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def package_of(self, source: Path) -> Path:
        """A directory importing ``anyprobe`` from ``source``'s core/ and plugins/."""
        root = self.directory / "baseline"
        if not root.exists():
            shutil.copytree(source / "core", root / "anyprobe")
            shutil.copytree(source / "plugins", root / "anyprobe" / "plugins")
        return root

    def nginx(self) -> str:
        port = free_port()
        conf = self.directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.directory, port=port))
        self.start(
            ["nginx", "-c", str(conf), "-p", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url), "nginx")
        return url

    def blackbox(self, gomaxprocs: int | None) -> str:
        port = free_port()
        env = dict(os.environ)
        if gomaxprocs:
            env["GOMAXPROCS"] = str(gomaxprocs)
        conf = self.directory / "blackbox.yml"
        conf.write_text(BLACKBOX_CONF)
        self.start(
            [
                "prometheus-blackbox-exporter",
                f"--config.file={conf}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "blackbox.log").open("wb"),
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/-/healthy"), "blackbox_exporter")
        self.pids[base] = self.processes[-1].pid
        return base

    def anyprobe(
        self, backend: str, server: str | None, source: Path | None = None, workers: int = 1
    ) -> str:
        """``anyprobe serve`` (``source``: the one of another source tree)."""
        command = [sys.executable, "-m", "anyprobe", "serve", "--listen", "127.0.0.1:0"]
        command += ["--backend", backend]
        if workers != 1:
            command += ["--workers", str(workers)]
        if server is not None:
            command += ["--server", server]
        env = {**os.environ, "ANYPROBE_LOAD_PLUGINS": ""}
        if source is not None:
            env["PYTHONPATH"] = str(self.package_of(source))
        process = self.start(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        match = re.search(r"serving on (http://\S+)", line)
        if not match:
            raise SystemExit(f"{' '.join(command)} did not start: {line}")
        self.pids[match.group(1)] = process.pid
        if workers > 1:  # every worker running
            wait_until(lambda: len(children_of(process.pid)) == workers - 1, "the workers")
        return match.group(1)


def check_probe(base: str, target: str) -> None:
    import httpx

    response = httpx.get(
        f"{base}/probe", params={"target": target, "module": "http_2xx"}, timeout=10
    )
    if response.status_code != 200 or not re.search(r"^probe_success 1", response.text, re.M):
        raise SystemExit(f"{base}: the probe of {target} does not succeed:\n{response.text}")


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far, every thread included,
    and its children's (the workers of ``serve --workers``)."""
    total = 0.0
    for process in (pid, *children_of(pid)):
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_wrk(url: str, connections: int, duration: float) -> tuple[float, int]:
    """wrk's requests/s and its count of non-2xx answers and socket errors."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = int(bad.group(1)) if bad else 0
    if errors:
        failures += sum(int(g) for g in errors.groups())
    return rate, failures


def run_httpx(url: str, connections: int, duration: float) -> tuple[float, int]:
    """An anyio + httpx load generator: ``connections`` workers, for ``duration`` s."""
    import anyio
    import httpx

    counts = [0, 0]

    async def main() -> None:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            deadline = anyio.current_time() + duration

            async def worker() -> None:
                while anyio.current_time() < deadline:
                    response = await client.get(url)
                    counts[0 if response.status_code == 200 else 1] += 1

            async with anyio.create_task_group() as tg:
                for _ in range(connections):
                    tg.start_soon(worker)

    start = time.perf_counter()
    anyio.run(main)
    return sum(counts) / (time.perf_counter() - start), counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["asyncio", "uvloop", "trio"])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["builtin", "hypercorn", "uvicorn"],
        help="anyprobe serve's HTTP servers to measure (uvicorn runs on asyncio only)",
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=[1],
        help="anyprobe serve --workers counts to measure, each a row (e.g. 1 2)",
    )
    parser.add_argument("--generator", choices=["wrk", "httpx"], default=None)
    parser.add_argument(
        "--baseline-source",
        type=Path,
        default=None,
        help="an anyprobe source tree (core/, plugins/) measured too, as 'before' "
        "(e.g. a checkout of main), with its own default server",
    )
    parser.add_argument(
        "--gomaxprocs",
        type=int,
        default=None,
        help="GOMAXPROCS for blackbox_exporter (1: one core, like one Python event loop)",
    )
    args = parser.parse_args()
    generator = args.generator or ("wrk" if shutil.which("wrk") else "httpx")
    drive = run_wrk if generator == "wrk" else run_httpx
    for tool in ("nginx", "prometheus-blackbox-exporter"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")

    load_at_start = " ".join(f"{value:.2f}" for value in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        servers = Servers(Path(tmp))
        try:
            target = servers.nginx()
            bases = {"blackbox_exporter 0.23": servers.blackbox(args.gomaxprocs)}
            for backend in args.backends:
                if backend == "uvloop" and importlib.util.find_spec("uvloop") is None:
                    continue
                for server in args.servers:
                    if server == "uvicorn" and backend == "trio":
                        continue  # uvicorn serves asyncio only
                    for workers in args.workers:
                        name = f"anyprobe {backend}, {server}"
                        if workers != 1:
                            name += f", --workers {workers}"
                        bases[name] = servers.anyprobe(backend, server, workers=workers)
                if args.baseline_source is not None:
                    name = f"before: anyprobe {backend}"
                    bases[name] = servers.anyprobe(backend, None, args.baseline_source)
            for base in bases.values():
                check_probe(base, target)
            rates: dict[str, list[float]] = {name: [] for name in bases}
            # CPU seconds per probe: what the machine's load moves least.
            costs: dict[str, list[float]] = {name: [] for name in bases}
            failures = dict.fromkeys(bases, 0)
            names = list(bases)
            for round_number in range(args.rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    url = f"{bases[name]}/probe?target={target}&module=http_2xx"
                    pid = servers.pids[bases[name]]
                    before = cpu_seconds(pid)
                    rate, bad = drive(url, args.connections, args.duration)
                    costs[name].append((cpu_seconds(pid) - before) / (rate * args.duration))
                    rates[name].append(rate)
                    failures[name] += bad
        finally:
            servers.stop()

    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"load average {load} at the end; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, generator {generator}, "
        f"{args.connections} connections, {args.duration:g} s x {args.rounds} rounds "
        f"(median), blackbox GOMAXPROCS {args.gomaxprocs or 'default'}; "
        f"at the start {load_at_start}"
    )
    report(rates, costs, failures)


def report(
    rates: dict[str, list[float]], costs: dict[str, list[float]], failures: dict[str, int]
) -> None:
    """The table: probes/s and CPU per probe, each as the median of each
    round's ratio to blackbox_exporter's in the same round (the machine's
    load moves between rounds, less within one)."""
    baseline, baseline_cost = rates["blackbox_exporter 0.23"], costs["blackbox_exporter 0.23"]
    print(
        "| server | probes/s | x blackbox | range | CPU ms/probe | "
        "x blackbox, probes per CPU s | range | failed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, values in rates.items():
        ratios = [value / base for value, base in zip(values, baseline, strict=True)]
        efficiency = [base / cost for cost, base in zip(costs[name], baseline_cost, strict=True)]
        print(
            f"| {name} | {statistics.median(values):.1f} | {statistics.median(ratios):.2f} | "
            f"{min(ratios):.2f}-{max(ratios):.2f} | {statistics.median(costs[name]) * 1000:.3f} | "
            f"{statistics.median(efficiency):.2f} | "
            f"{min(efficiency):.2f}-{max(efficiency):.2f} | {failures[name]} |"
        )


if __name__ == "__main__":
    main()
