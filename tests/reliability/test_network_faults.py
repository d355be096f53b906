"""Real network faults between two network namespaces this module creates.

A client namespace and a server namespace are joined by a veth pair with the
addresses of a private /30 (10.248.7.1 for the client, 10.248.7.2 for the
server), assigned only inside them; the server namespace runs the test farm
and ``anyprobe`` runs in the client namespace. Faults are made with ``tc`` on
the client's side of the link:

- dropped packets: a ``pfifo`` queue of length 0 drops everything sent;
- a slow link: a ``tbf`` rate limit of 16 kbit/s;
- added latency and random loss: ``netem`` (skipped, with the reason, where
  the kernel has no netem qdisc);
- a link that recovers: every packet of the first connection to a listener
  is dropped by a BPF filter on that listener, in the server namespace,
  and only that connection's (no other traffic can trigger or end the fault).

Timeouts and retries must behave as docs/reliability.md says, and the summary
must name the phase that timed out. Nothing but the two namespace addresses
is ever contacted; the namespaces are deleted by a finalizer.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, clean_env

pytestmark = pytest.mark.slow

CLIENT_ADDRESS = "10.248.7.1"
SERVER_ADDRESS = "10.248.7.2"
PREFIX = 30
TIMEOUT = "0.5"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Link:
    """The two namespaces, the client's veth, the farm's ports in the server namespace."""

    client: str
    server: str
    device: str
    http_port: int
    tcp_port: int

    def tc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client, "tc", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def fault(self, *qdisc: str) -> None:
        """Replace the client's egress queue with ``qdisc`` (e.g. ``pfifo limit 0``)."""
        done = self.tc("qdisc", "replace", "dev", self.device, "root", *qdisc)
        if done.returncode != 0 and "unknown" in done.stderr.lower():
            pytest.skip(f"the kernel has no {qdisc[0]} qdisc: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr

    def heal(self) -> None:
        self.tc("qdisc", "del", "dev", self.device, "root")

    def dropped(self) -> int:
        """Packets the client's egress queue has dropped so far."""
        shown = self.tc("-s", "qdisc", "show", "dev", self.device).stdout
        return sum(int(n) for n in re.findall(r"dropped (\d+)", shown))

    def anyprobe(self, *args: str) -> subprocess.Popen[str]:
        """``anyprobe ARGS`` in the client namespace (reports go to files the test reads)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.client, sys.executable, "-m", "anyprobe", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("network namespaces need root and iproute2 (ip, tc)")
    suffix = str(os.getpid())
    client, server = f"anyprobe-c{suffix}", f"anyprobe-s{suffix}"
    device, peer = f"apc{suffix}"[:15], f"aps{suffix}"[:15]
    created: list[str] = []
    farm: subprocess.Popen[str] | None = None
    try:
        for namespace in (client, server):
            made = _ip("netns", "add", namespace, check=False)
            if made.returncode != 0:
                pytest.skip(f"the kernel refuses network namespaces: {made.stderr.strip()}")
            created.append(namespace)
        _ip("-n", client, "link", "add", device, "type", "veth", "peer", "name", peer,
            "netns", server)  # fmt: skip
        _ip("-n", client, "addr", "add", f"{CLIENT_ADDRESS}/{PREFIX}", "dev", device)
        _ip("-n", server, "addr", "add", f"{SERVER_ADDRESS}/{PREFIX}", "dev", peer)
        for namespace, dev in ((client, device), (server, peer)):
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "link", "set", dev, "up")
        # Permanent neighbour entries: a dropped ARP request must not turn a
        # silent drop into "no route to host".
        for namespace, dev, other_namespace, other_dev, address in (
            (client, device, server, peer, SERVER_ADDRESS),
            (server, peer, client, device, CLIENT_ADDRESS),
        ):
            shown = json.loads(_ip("-j", "-n", other_namespace, "link", "show", other_dev).stdout)
            _ip("-n", namespace, "neigh", "replace", address, "lladdr", shown[0]["address"],
                "dev", dev, "nud", "permanent")  # fmt: skip
        farm = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-m", "tests.reliability.farm",
             SERVER_ADDRESS],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert farm.stdout is not None
        ports = json.loads(farm.stdout.readline())
        yield Link(
            client, server, device, ports["http"][SERVER_ADDRESS], ports["tcp"][SERVER_ADDRESS]
        )
    finally:
        if farm is not None:
            assert farm.stdin is not None
            farm.stdin.close()
            try:
                farm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                farm.kill()
                farm.wait()
        for namespace in created:  # deleting a namespace deletes its end of the veth
            _ip("netns", "del", namespace, check=False)


@pytest.fixture
def healed(link: Link) -> Iterator[Link]:
    link.heal()
    yield link
    link.heal()


def finish(proc: subprocess.Popen[str], out: Path) -> dict[str, dict[str, Any]]:
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    return {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}


def run(link: Link, out: Path, backend: str, *args: str) -> dict[str, dict[str, Any]]:
    proc = link.anyprobe(
        "check", "--backend", backend, "--no-progress", "-r", f"jsonl={out}", *args
    )
    return finish(proc, out)


BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@BACKENDS
def test_dropped_packets_time_out_during_connect(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    healed.fault("pfifo", "limit", "0")
    tcp = f"tcp://{SERVER_ADDRESS}:{healed.tcp_port}"
    http = f"http://{SERVER_ADDRESS}:{healed.http_port}/health"
    results = run(healed, tmp_path / "r.jsonl", backend, "-t", TIMEOUT, tcp, http)
    for url in (tcp, http):
        result = results[url]
        assert result["status"] == "critical"
        assert result["summary"] == f"timed out after {TIMEOUT} s during connect"
        assert result["error"]["phase"] == "connect"
        assert result["attempts"] == 1
    assert healed.dropped() > 0


@BACKENDS
def test_every_retry_dropped_reports_all_attempts_failed(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    healed.fault("pfifo", "limit", "0")
    tcp = f"tcp://{SERVER_ADDRESS}:{healed.tcp_port}"
    results = run(healed, tmp_path / "r.jsonl", backend, "-t", TIMEOUT, "--retries", "2", tcp)
    result = results[tcp]
    assert result["status"] == "critical"
    assert result["attempts"] == 3
    assert result["summary"] == (
        f"timed out after {TIMEOUT} s during connect (all 3 attempts failed)"
    )


def _socket_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to ``sock`` (SO_ATTACH_FILTER), replacing any other."""
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(filters))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


SO_ATTACH_FILTER = 26
#: ret #0: drop every packet.
DROP_EVERYTHING = [(0x06, 0, 0, 0)]


def _drop_source_port(port: int) -> list[tuple[int, int, int, int]]:
    # A TCP socket's filter sees the segment from its TCP header on:
    # ldh [0] (the source port); jeq #port, drop, keep.
    return [(0x28, 0, 0, 0), (0x15, 0, 1, port), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF)]


def drop_first_connection(address: str) -> None:
    """Listen on ``address``; drop every packet of the first connection, accept the others.

    Runs in the server namespace (``python -c``). It prints its port, drops
    every SYN until a raw socket has seen the first one, then drops only that
    connection's source port (its retransmissions too) and prints
    ``dropping PORT``: the first attempt can only time out, every later one
    connects. It ends when its standard input closes.
    """
    listener = socket.create_server((address, 0), backlog=16)
    _socket_filter(listener, DROP_EVERYTHING)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    port = listener.getsockname()[1]
    print(port, flush=True)
    first: int | None = None
    while True:
        readable, _, _ = select.select([raw, listener, sys.stdin], [], [], 60)
        if not readable or sys.stdin in readable:
            return
        if raw in readable and first is None:
            packet = raw.recv(65535)
            tcp = packet[(packet[0] & 0x0F) * 4 :]
            source, destination = struct.unpack("!HH", tcp[:4])
            if destination == port and tcp[13] & 0x12 == 0x02:  # SYN, not SYN-ACK
                first = source
                _socket_filter(listener, _drop_source_port(first))
                print(f"dropping {first}", flush=True)
        elif raw in readable:
            raw.recv(65535)
        if listener in readable:
            listener.accept()[0].close()


@BACKENDS
def test_link_that_recovers_passes_on_the_retry_and_says_so(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    """The first connection's packets are all dropped (its SYN and the kernel's
    retransmissions), so the first attempt times out during connect; the
    retry is a new connection, which the server accepts."""
    dropper = subprocess.Popen(
        ["ip", "netns", "exec", healed.server, sys.executable, "-c",
         "from tests.reliability.test_network_faults import drop_first_connection; "
         f"drop_first_connection({SERVER_ADDRESS!r})"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert dropper.stdout is not None and dropper.stdin is not None
        tcp = f"tcp://{SERVER_ADDRESS}:{int(dropper.stdout.readline())}"
        out = tmp_path / "r.jsonl"
        proc = healed.anyprobe(
            "check", "--backend", backend, "--no-progress", "-r", f"jsonl={out}",
            "-t", "1", "--retries", "3", tcp,
        )  # fmt: skip
        result = finish(proc, out)[tcp]
        assert dropper.stdout.readline().startswith("dropping ")
    finally:
        if dropper.stdin is not None:
            dropper.stdin.close()
        try:
            dropper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dropper.kill()
            dropper.wait()
    assert result["status"] == "ok", result["summary"]
    assert result["attempts"] == 2
    assert result["summary"].endswith(
        "(on attempt 2; attempt 1: timed out after 1 s during connect)"
    )


@BACKENDS
def test_slow_link_times_out_while_reading_the_body(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    """16 kbit/s: the handshake and the response head pass, a 200 kB body cannot in 2 s."""
    healed.fault("tbf", "rate", "16kbit", "burst", "16kb", "latency", "5s")
    # The request goes out through the limited queue; the body comes back through
    # the server's, which is not limited: limit the server's side too.
    subprocess.run(
        ["ip", "netns", "exec", healed.server, "tc", "qdisc", "replace", "dev",
         f"aps{os.getpid()}"[:15], "root", "tbf", "rate", "16kbit", "burst", "16kb",
         "latency", "5s"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    try:
        small = f"http://{SERVER_ADDRESS}:{healed.http_port}/big/100"
        big = f"http://{SERVER_ADDRESS}:{healed.http_port}/big/200000"
        # One at a time: the big body must not queue ahead of the small answer.
        results = run(healed, tmp_path / "r.jsonl", backend, "-t", "2", "-c", "1", small, big)
    finally:
        subprocess.run(
            ["ip", "netns", "exec", healed.server, "tc", "qdisc", "del", "dev",
             f"aps{os.getpid()}"[:15], "root"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    assert results[small]["status"] == "ok", results[small]["summary"]
    slow = results[big]
    assert slow["status"] == "critical"
    assert slow["summary"] == "timed out after 2 s during transfer"
    assert slow["error"]["phase"] == "transfer"
    assert "first_byte" in slow["phases"]


@BACKENDS
def test_added_latency_shows_in_the_phases_and_makes_a_warning(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    """netem adds 300 ms to every packet the client sends: a connect takes at
    least 300 ms (over warning_after 0.2), and an HTTP answer needs two such
    trips (over a 0.5 s timeout, during first_byte)."""
    healed.fault("netem", "delay", "300ms")
    tcp = f"tcp://{SERVER_ADDRESS}:{healed.tcp_port}"
    http = f"http://{SERVER_ADDRESS}:{healed.http_port}/health"
    tcp_results = run(
        healed, tmp_path / "t.jsonl", backend, "-t", "5", "--set", "warning_after=0.2", tcp
    )
    result = tcp_results[tcp]
    assert result["status"] == "warning"
    assert result["phases"]["connect"] >= 0.3
    http_results = run(healed, tmp_path / "h.jsonl", backend, "-t", TIMEOUT, http)
    assert http_results[http]["summary"] == f"timed out after {TIMEOUT} s during first_byte"


@BACKENDS
def test_random_loss_is_retried_and_every_verdict_says_what_happened(
    healed: Link, tmp_path: Path, backend: str
) -> None:
    """netem drops half the client's packets: attempts fail at random, retries
    recover most checks, and each result says how it went."""
    healed.fault("netem", "loss", "50%")
    urls = [f"tcp://{SERVER_ADDRESS}:{healed.tcp_port}/{i}" for i in range(20)]
    results = run(healed, tmp_path / "r.jsonl", backend, "-t", TIMEOUT, "--retries", "5", *urls)
    retried = 0
    for result in results.values():
        if result["status"] == "ok" and result["attempts"] > 1:
            retried += 1
            assert f"attempt 1: timed out after {TIMEOUT} s during connect" in result["summary"]
        elif result["status"] != "ok":
            assert result["summary"].endswith("(all 6 attempts failed)")
    # Each check's first attempt is lost with probability 1/2: 20 lucky ones are 1e-6.
    assert retried > 0
