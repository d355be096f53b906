"""UDP and NTP checks per second: anyprobe's udp and ntp probes vs plain loops.

The udp probe (no options: an empty datagram, any reply passes) against a
UDP server that answers every datagram with ``PONG``, next to a plain loop
of ``anyio.create_connected_udp_socket``, send, receive; the ntp probe against
Debian's chronyd (or, where it is not installed, a Python NTP responder),
next to a plain loop that sends an NTPv4 request the same way and reads the
offset out of the reply. The servers run in their own processes, so their CPU
does not compete with the client for the GIL. On asyncio and on trio:

    python benchmarks/udp_ntp_bench.py                 # 2000 checks, 20 at once, 5 rounds
    python benchmarks/udp_ntp_bench.py --checks 5000 --rounds 3
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from _compare import compare, parse_args, timed_workers

ECHO_SERVER = """
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
while True:
    data, peer = server.recvfrom(65535)
    server.sendto(b"PONG", peer)
"""

NTP_SERVER = """
import socket, struct, time
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
def stamp(unix):
    value = unix + 2208988800
    return (int(value) % (1 << 32)) << 32 | int((value % 1) * (1 << 32))
while True:
    data, peer = server.recvfrom(1024)
    now = stamp(time.time())
    origin = struct.unpack("!Q", data[40:48])[0]
    reply = struct.pack("!BBbbII4sQQQQ", 0x24, 2, 6, -20, 0, 0, b"LOCL", now, origin, now, now)
    server.sendto(reply, peer)
"""

REQUEST = struct.Struct("!B47x")


def _answers(port: int, payload: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(payload, ("127.0.0.1", port))
            return bool(sock.recv(1024))
        except OSError:
            return False


@contextlib.contextmanager
def python_server(code: str) -> Iterator[int]:
    """A Python UDP server in a process of its own; yields its port."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=5)


@contextlib.contextmanager
def ntp_server() -> Iterator[tuple[int, str]]:
    """chronyd on a loopback port (``-x``: it never sets the clock), else the
    Python responder; yields the port and what serves it."""
    binary = shutil.which("chronyd") or "/usr/sbin/chronyd"
    if not os.path.exists(binary):
        with python_server(NTP_SERVER) as port:
            yield port, "a Python NTP responder"
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="anyprobe-bench-chrony-")
    config = os.path.join(directory, "chrony.conf")
    with open(config, "w", encoding="utf-8") as file:
        file.write(
            f"port {port}\nbindaddress 127.0.0.1\nlocal stratum 8\nallow 127.0.0.1\n"
            f"cmdport 0\nbindcmdaddress /\npidfile {directory}/chronyd.pid\n"
        )
    user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
    process = subprocess.Popen([binary, "-d", "-x", *user, "-f", config], stderr=subprocess.DEVNULL)
    try:
        request = REQUEST.pack(0x23)
        for _ in range(100):
            if _answers(port, request):
                break
            time.sleep(0.05)
        yield port, "chronyd"
    finally:
        process.terminate()
        process.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


async def plain_udp_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: a connected anyio UDP socket per check, a datagram sent and
    the reply received. (asyncio before Python 3.13 does not send an empty
    datagram, which is what a udp:// check without options sends.)"""
    import anyio

    async def one_check() -> bool:
        async with await anyio.create_connected_udp_socket("127.0.0.1", port) as udp:
            await udp.send(b"PING")
            return await udp.receive() == b"PONG"

    return await timed_workers(one_check, checks, concurrency)


async def plain_ntp_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: an NTPv4 request with a random transmit timestamp on a
    connected anyio UDP socket, the reply's origin checked, the offset computed."""
    import anyio

    async def one_check() -> bool:
        transmit = os.urandom(8)
        async with await anyio.create_connected_udp_socket("127.0.0.1", port) as udp:
            sent = time.time()
            await udp.send(b"\x23" + bytes(39) + transmit)
            reply = await udp.receive()
            received = time.time()
        if reply[24:32] != transmit:
            return False
        server_rx, server_tx = struct.unpack("!QQ", reply[32:48])
        t2 = server_rx / (1 << 32) - 2208988800
        t3 = server_tx / (1 << 32) - 2208988800
        offset = ((t2 - sent) + (t3 - received)) / 2
        return 0 < reply[1] < 16 and abs(offset) < 0.5

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    print(f"{args.checks} checks, {args.concurrency} at once, {args.rounds} rounds")
    with python_server(ECHO_SERVER) as port:
        print("\nUDP datagram and reply against a Python server:\n")
        labels = {
            "plain": "plain anyio connected UDP socket loop",
            "probe": "udp probe called directly",
            "anyprobe": "anyprobe.check(udp://...)",
        }
        compare(port, f"udp://127.0.0.1:{port}", plain_udp_loop, labels, args)
    with ntp_server() as (port, what):
        print(f"\nNTP request against {what}:\n")
        labels = {
            "plain": "plain anyio NTP request loop",
            "probe": "ntp probe called directly",
            "anyprobe": "anyprobe.check(ntp://...)",
        }
        compare(port, f"ntp://127.0.0.1:{port}", plain_ntp_loop, labels, args)


if __name__ == "__main__":
    main()
