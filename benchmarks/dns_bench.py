"""DNS A queries per second: anyprobe's dns probe vs a plain dnspython loop.

Both ask the same loopback server the same question over UDP, with the same
number of concurrent workers, alternating, on asyncio and on trio. The
server is Debian's dnsmasq when installed (a separate process in C, so it
keeps up with either client), else the tests' own responder in a subprocess:

    python benchmarks/dns_bench.py                      # 2000 queries, 20 at once, 5 rounds
    python benchmarks/dns_bench.py --checks 5000 --concurrency 50 --rounds 3

The table gives the median queries/s of each (wall clock) and their ratio, and
the client's CPU time per query (process time, which other load on the
machine disturbs less) and the plain loop's over anyprobe's.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

NAME = "www.example.test"

RESPONDER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.servers.dns import run_dns_server
with run_dns_server() as server:
    print(server.port, flush=True)
    sys.stdin.read()
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return int(udp.getsockname()[1])


@contextlib.contextmanager
def dns_server() -> Iterator[tuple[str, int]]:
    """A DNS server answering ``NAME`` on loopback; yields (description, port)."""
    binary = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None
    )
    if binary:
        port = _free_port()
        command = [
            binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={port}",
            "--address=/example.test/127.0.0.2",
        ]
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        description = "dnsmasq"
    else:
        root = str(Path(__file__).resolve().parent.parent)
        process = subprocess.Popen(
            [sys.executable, "-c", RESPONDER.format(root=root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        port = int(process.stdout.readline())
        description = "the tests' responder (dnsmasq not installed)"
    try:
        _wait_until_answering(port)
        yield description, port
    finally:
        process.terminate()
        process.wait(timeout=5)


def _wait_until_answering(port: int) -> None:
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query(NAME, "A")
    for _ in range(50):
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.1)
    raise RuntimeError("the DNS server did not answer")


async def plain_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: workers sending the query with dnspython's async API."""
    import anyio
    import dns.asyncbackend
    import dns.asyncquery
    import dns.message
    import dns.rcode
    import sniffio

    backend = dns.asyncbackend.get_backend(sniffio.current_async_library())
    remaining = iter(range(checks))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
            with anyio.fail_after(5):
                response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, backend=backend)
            if response.rcode() == dns.rcode.NOERROR and response.answer:
                ok += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ok == checks, ok
    return checks / elapsed, cpu / checks * 1e6


async def anyprobe_checks(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The same queries as ``dns://`` checks through anyprobe's public API."""
    import anyprobe

    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    start, cpu = time.perf_counter(), time.process_time()
    results = await anyprobe.check(
        [f"dns://127.0.0.1:{port}/{NAME}"] * checks,
        manager=manager,
        concurrency=concurrency,
        timeout=5,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r.summary for r in results if r.status is not anyprobe.Status.OK]
    assert not failed, failed[:3]
    return checks / elapsed, cpu / checks * 1e6


async def probe_direct(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The probe's own cost: workers calling its ``check`` directly, without the
    scheduler (no limiter, no Result, no result stream)."""
    import anyio

    import anyprobe

    manager, [target] = anyprobe.prepare([f"dns://127.0.0.1:{port}/{NAME}"])
    probe = manager.probes[target.probe]
    remaining = iter(range(checks))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            deadline = anyio.current_time() + 5
            ctx = anyprobe.CheckContext(timeout=5, deadline=deadline)
            with anyio.fail_after(5):
                outcome = await probe.check(target, target.options, ctx)
            if outcome.status is anyprobe.Status.OK:
                ok += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert ok == checks, ok
    return checks / elapsed, cpu / checks * 1e6


def main() -> None:
    import anyio

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="median of N alternating rounds")
    args = parser.parse_args()
    with dns_server() as (description, port):
        print(
            f"{args.checks} DNS A queries over UDP, {args.concurrency} at once, "
            f"{args.rounds} rounds, against {description}"
        )
        print("| backend | loop | checks/s | vs plain | CPU per check | plain CPU / this CPU |")
        print("|---|---|---:|---:|---:|---:|")
        for backend in ("asyncio", "trio"):
            rates: dict[str, list[float]] = {"plain": [], "probe": [], "anyprobe": []}
            cpu: dict[str, list[float]] = {"plain": [], "probe": [], "anyprobe": []}
            for _ in range(args.rounds):
                for name, run in (
                    ("plain", plain_loop),
                    ("probe", probe_direct),
                    ("anyprobe", anyprobe_checks),
                ):
                    rate, micros = anyio.run(
                        run, port, args.checks, args.concurrency, backend=backend
                    )
                    rates[name].append(rate)
                    cpu[name].append(micros)
            plain = statistics.median(rates["plain"])
            plain_cpu = statistics.median(cpu["plain"])
            labels = {
                "plain": "plain dnspython loop",
                "probe": "dns probe called directly",
                "anyprobe": "anyprobe.check(dns://...)",
            }
            for name, label in labels.items():
                rate, micros = statistics.median(rates[name]), statistics.median(cpu[name])
                print(
                    f"| {backend} | {label} | {rate:,.0f} | {rate / plain:.2f}x "
                    f"| {micros:.0f} µs | {plain_cpu / micros:.2f}x |"
                )


if __name__ == "__main__":
    main()
