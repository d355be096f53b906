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

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from _compare import compare, parse_args, timed_workers

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
    import dns.asyncbackend
    import dns.asyncquery
    import dns.message
    import dns.rcode
    import sniffio

    backend = dns.asyncbackend.get_backend(sniffio.current_async_library())

    async def one_check() -> bool:
        query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
        response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, backend=backend)
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    with dns_server() as (description, port):
        print(
            f"{args.checks} DNS A queries over UDP, {args.concurrency} at once, "
            f"{args.rounds} rounds, against {description}"
        )
        labels = {
            "plain": "plain dnspython loop",
            "probe": "dns probe called directly",
            "anyprobe": "anyprobe.check(dns://...)",
        }
        compare(port, f"dns://127.0.0.1:{port}/{NAME}", plain_loop, labels, args)


if __name__ == "__main__":
    main()
