"""ICMP echo checks per second: anyprobe's icmp probe vs a plain socket loop.

Each check sends one echo request to 127.0.0.1 (``count = 1``) and waits for
its reply. The plain loop does what a small ping script would: a socket per
check (a datagram socket where the kernel allows one, else a raw one), the
request with its checksum, a wait with anyio.wait_readable, replies read until
the one with its identifier and sequence number. Same number of concurrent
workers, alternating rounds, on asyncio and on trio (needs an ICMP socket:
root, CAP_NET_RAW or net.ipv4.ping_group_range):

    python benchmarks/icmp_bench.py                      # 2000 checks, 20 at once, 5 rounds
    python benchmarks/icmp_bench.py --checks 5000 --concurrency 50 --rounds 3

The table gives the median checks/s of each (wall clock) and their ratio, and
the client's CPU time per check and the plain loop's over anyprobe's.
"""

from __future__ import annotations

import random
import socket
import statistics
import struct
import time
from typing import Any

from _compare import parse_args, timed_workers

URL = "icmp://127.0.0.1"
OPTIONS = {"count": 1}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total += total >> 16
    return ~total & 0xFFFF


def _socket() -> tuple[socket.socket, bool]:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    except PermissionError:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True


async def plain_loop(checks: int, concurrency: int) -> tuple[float, float]:
    import anyio

    async def one_check() -> bool:
        sock, raw = _socket()
        with sock:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", 0))
            identifier = random.getrandbits(16) if raw else sock.getsockname()[1]
            payload = bytes(56)
            header = struct.pack("!BBHHH", 8, 0, 0, identifier, 1)
            summed = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), identifier, 1)
            sock.send(summed + payload)
            while True:
                await anyio.wait_readable(sock)
                data = sock.recv(65535)
                if raw:
                    data = data[(data[0] & 0x0F) * 4 :]
                kind, _code, _sum, ident, sequence = struct.unpack_from("!BBHHH", data)
                if kind == 0 and ident == identifier and sequence == 1:
                    return True

    return await timed_workers(one_check, checks, concurrency)


async def probe_direct(checks: int, concurrency: int) -> tuple[float, float]:
    import anyio

    import anyprobe

    manager, [target] = anyprobe.prepare([URL], options=OPTIONS)
    probe = manager.probes[target.probe]
    # The run's shared resources, as the scheduler hands every check of a run
    # (the shared ICMP socket lives there).
    resources: dict[Any, Any] = {}

    async def one_check() -> bool:
        ctx = anyprobe.CheckContext(
            timeout=5, deadline=anyio.current_time() + 5, resources=resources
        )
        outcome = await probe.check(target, target.options, ctx)
        return outcome.status is anyprobe.Status.OK

    try:
        return await timed_workers(one_check, checks, concurrency)
    finally:
        for resource in resources.values():
            if hasattr(resource, "aclose"):
                await resource.aclose()


async def anyprobe_checks(checks: int, concurrency: int) -> tuple[float, float]:
    import anyprobe

    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    start, cpu = time.perf_counter(), time.process_time()
    results = await anyprobe.check(
        [URL] * checks, options=OPTIONS, manager=manager, concurrency=concurrency, timeout=5
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = [r.summary for r in results if r.status is not anyprobe.Status.OK]
    assert not failed, failed[:3]
    return checks / elapsed, cpu / checks * 1e6


def main() -> None:
    import anyio

    args = parse_args(__doc__)
    print(f"{args.checks} ICMP echo checks, {args.concurrency} at once, {args.rounds} rounds")
    loops = {
        "plain socket loop": plain_loop,
        "icmp probe called directly": probe_direct,
        "anyprobe.check(icmp://...)": anyprobe_checks,
    }
    print("| backend | loop | checks/s | vs plain | CPU per check | plain CPU / this CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for backend in ("asyncio", "trio"):
        rates: dict[str, list[float]] = {name: [] for name in loops}
        cpu: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, loop in loops.items():
                rate, micros = anyio.run(loop, args.checks, args.concurrency, backend=backend)
                rates[name].append(rate)
                cpu[name].append(micros)
        plain_rate = statistics.median(rates["plain socket loop"])
        plain_cpu = statistics.median(cpu["plain socket loop"])
        for name in loops:
            rate, micros = statistics.median(rates[name]), statistics.median(cpu[name])
            print(
                f"| {backend} | {name} | {rate:,.0f} | {rate / plain_rate:.2f}x "
                f"| {micros:.0f} µs | {plain_cpu / micros:.2f}x |"
            )


if __name__ == "__main__":
    main()
