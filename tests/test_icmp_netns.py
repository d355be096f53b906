"""The ICMP probe against a host in a network namespace this module creates.

A client namespace and a server namespace are joined by a veth pair, with
10.248.9.1 and fd00:248:9::1 on the client's side and 10.248.9.2 and
fd00:248:9::2 on the server's (a /29 and a /64, assigned only inside them).
``anyprobe`` runs in the client namespace; the server namespace's kernel
answers the echo requests. Faults are made there with nftables rules on
echo requests (dropped all, every other one, at random, or unless their TTL
is 7), and with netem on the client's link where the kernel has it.
10.248.9.3 is on the link but absent (its ARP request goes unanswered), and
10.248.10.1 has no route at all. Three more namespaces put a router between
a client and a host (10.248.14.0/30 and 10.248.15.0/30, fd00:248:14::/64
and fd00:248:15::/64), for a TTL that runs out on the way.

The client namespace's ``net.ipv4.ping_group_range`` selects the socket:
"1 0" (no group may open an ICMP datagram socket, the kernel's default) with
root's raw socket, or every group, for the unprivileged datagram path; a
process whose capability bounding set lacks CAP_NET_RAW, in "1 0", can open
neither. Nothing but the namespaces' own addresses is ever contacted; the
namespaces are deleted by a finalizer.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT_V4, SERVER_V4, ABSENT_V4, UNROUTED_V4 = (
    "10.248.9.1",
    "10.248.9.2",
    "10.248.9.3",
    "10.248.10.1",
)
CLIENT_V6, SERVER_V6 = "fd00:248:9::1", "fd00:248:9::2"
SERVERS = pytest.mark.parametrize("server", [SERVER_V4, SERVER_V6])
BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
#: The capability a raw socket needs (linux/capability.h), and prctl's
#: PR_CAPBSET_DROP, to run a root process without it.
CAP_NET_RAW = 13
PR_CAPBSET_DROP = 24


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Hosts:
    """The two namespaces and the client's end of the link."""

    client: str
    server: str
    device: str

    def nft(self, *rules: str) -> None:
        """Replace the server's echo-request rules with ``rules`` (nft syntax,
        each counting what it drops)."""
        _run("ip", "netns", "exec", self.server, "nft", "flush", "chain", "inet", "t", "input")
        for rule in rules:
            _run("ip", "netns", "exec", self.server, "nft", "add", "rule", "inet", "t", "input",
                 *rule.split(), "counter", "drop")  # fmt: skip

    def dropped(self) -> int:
        """Packets the server's rules have dropped since they were set."""
        shown = _run("ip", "netns", "exec", self.server, "nft", "-j", "list", "table", "inet", "t")
        total = 0
        for item in json.loads(shown.stdout)["nftables"]:
            for expression in item.get("rule", {}).get("expr", []):
                if "counter" in expression:
                    total += expression["counter"]["packets"]
        return total

    def ping_group_range(self, value: str) -> None:
        _run("ip", "netns", "exec", self.client, "sysctl", "-qw",
             f"net.ipv4.ping_group_range={value}")  # fmt: skip

    def anyprobe(
        self,
        backend: str,
        url: str,
        *options: str,
        timeout: str = "5",
        preexec_fn: Callable[[], None] | None = None,
    ) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
        """``anyprobe check URL`` in the client namespace: its JSON Lines record."""
        sets = [arg for option in options for arg in ("--set", option)]
        done = subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-m", "anyprobe", "check",
             "--backend", backend, "--no-progress", "-t", timeout, "-r", "jsonl", url, *sets],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            preexec_fn=preexec_fn,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        [line] = done.stdout.splitlines()
        record: dict[str, Any] = json.loads(line)
        return record, done


def run_config(namespace: str, backend: str, config: str) -> dict[str, dict[str, Any]]:
    """``anyprobe run --explain`` of a TOML ``config`` in ``namespace``: each
    check's JSON Lines record, by check name (the run's checks share sockets)."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "anyprobe", "run",
         "--backend", backend, "--no-progress", "--explain", "-r", "jsonl", "-"],
        input=config, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    return {record["name"]: record for record in records}


def icmp_errors(record: dict[str, Any]) -> list[str]:
    """The ICMP errors a check's trace says it received."""
    return [e["message"] for e in record["trace"] if e["message"].startswith("ICMP error")]


def checks_toml(*checks: tuple[str, str, str]) -> str:
    """A config of icmp checks: (name, address, more options as TOML)."""
    return "".join(
        f'[[check]]\nname = "{name}"\nurl = "{url(address)}"\ntimeout = 5\n{extra}\n'
        for name, address, extra in checks
    )


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    if shutil.which("nft") is None:
        pytest.skip("the loss tests need nftables (nft): apt-get install nftables")
    suffix = str(os.getpid())
    client, server = f"anyprobe-ic{suffix}", f"anyprobe-is{suffix}"
    device, peer = f"aic{suffix}"[:15], f"ais{suffix}"[:15]
    created: list[str] = []
    try:
        for namespace in (client, server):
            made = _run("ip", "netns", "add", namespace, check=False)
            if made.returncode != 0:
                pytest.skip(f"the kernel refuses network namespaces: {made.stderr.strip()}")
            created.append(namespace)
        _setup(client, server, device, peer)
        table = _run("ip", "netns", "exec", server, "nft", "add", "table", "inet", "t", check=False)
        if table.returncode != 0:
            pytest.skip(f"the kernel has no nftables: {table.stderr.strip()}")
        _run("ip", "netns", "exec", server, "nft", "add", "chain", "inet", "t", "input",
             "{ type filter hook input priority 0 ; }")  # fmt: skip
        yield Hosts(client, server, device)
    finally:
        for namespace in created:  # deleting a namespace deletes its end of the veth
            _run("ip", "netns", "del", namespace, check=False)


def _setup(client: str, server: str, device: str, peer: str) -> None:
    _run("ip", "-n", client, "link", "add", device, "type", "veth", "peer", "name", peer,
         "netns", server)  # fmt: skip
    for namespace, dev, v4, v6 in (
        (client, device, CLIENT_V4, CLIENT_V6),
        (server, peer, SERVER_V4, SERVER_V6),
    ):
        _run("ip", "-n", namespace, "addr", "add", f"{v4}/29", "dev", dev)
        _run("ip", "-n", namespace, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        _run("ip", "-n", namespace, "link", "set", dev, "up")
    # The server's replies leave with TTL (hop limit) 33, so reply_ttl is
    # known; an absent neighbour is given up on after one 100 ms ARP request.
    for setting in (
        "net.ipv4.ip_default_ttl=33",
        f"net.ipv6.conf.{peer}.hop_limit=33",
    ):
        _run("ip", "netns", "exec", server, "sysctl", "-qw", setting)
    for setting in (
        f"net.ipv4.neigh.{device}.mcast_solicit=1",
        f"net.ipv4.neigh.{device}.retrans_time_ms=100",
    ):
        _run("ip", "netns", "exec", client, "sysctl", "-qw", setting)
    # Permanent neighbour entries: a dropped request must stay a silent drop.
    for namespace, dev, other_namespace, other_dev, addresses in (
        (client, device, server, peer, (SERVER_V4, SERVER_V6)),
        (server, peer, client, device, (CLIENT_V4, CLIENT_V6)),
    ):
        shown = json.loads(
            _run("ip", "-j", "-n", other_namespace, "link", "show", other_dev).stdout
        )
        for address in addresses:
            _run("ip", "-n", namespace, "neigh", "replace", address, "lladdr",
                 shown[0]["address"], "dev", dev, "nud", "permanent")  # fmt: skip


@pytest.fixture
def clean(hosts: Hosts) -> Iterator[Hosts]:
    """The hosts with no fault: no drop rule, no netem, raw sockets only."""
    hosts.nft()
    hosts.ping_group_range("1 0")
    yield hosts
    hosts.nft()
    hosts.ping_group_range("1 0")
    _run("ip", "netns", "exec", hosts.client, "tc", "qdisc", "del", "dev", hosts.device, "root",
         check=False)  # fmt: skip


def url(address: str) -> str:
    return f"icmp://[{address}]" if ":" in address else f"icmp://{address}"


# -- both kinds of socket ---------------------------------------------------------


@BACKENDS
@SERVERS
@pytest.mark.parametrize("socket_type", ["raw", "datagram", "auto"])
def test_host_in_a_namespace_answers(
    clean: Hosts, backend: str, server: str, socket_type: str
) -> None:
    if socket_type != "raw":
        clean.ping_group_range("0 2147483647")  # every group: datagram sockets allowed
    record, done = clean.anyprobe(
        backend, url(server), "count=3", "interval=0.02", f"socket_type={socket_type}"
    )
    assert done.returncode == 0, record["summary"]
    assert record["summary"].startswith(f"3/3 replies from {server} (0% loss)")
    metrics = record["metrics"]
    assert metrics["socket_type"] == ("raw" if socket_type == "raw" else "datagram")
    assert metrics["reply_ttl"] == 33
    assert metrics["packets_received"] == 3
    assert set(record["phases"]) == {"resolve", "rtt"}


@BACKENDS
def test_auto_falls_back_to_a_raw_socket(clean: Hosts, backend: str) -> None:
    record, done = clean.anyprobe(backend, url(SERVER_V4), "count=1")
    assert done.returncode == 0, record["summary"]
    assert record["metrics"]["socket_type"] == "raw"


def _without_cap_net_raw() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_NET_RAW)")


@BACKENDS
def test_neither_socket_is_unknown_and_says_what_to_enable(clean: Hosts, backend: str) -> None:
    record, done = clean.anyprobe(backend, url(SERVER_V4), preexec_fn=_without_cap_net_raw)
    assert done.returncode == 3
    assert record["status"] == "unknown"
    assert record["summary"] == (
        "cannot open an ICMP socket (datagram: permission denied; raw: operation not "
        "permitted): allow unprivileged ICMP sockets for one of this user's groups "
        '(sysctl -w net.ipv4.ping_group_range="0 2147483647") or run as root or with '
        "CAP_NET_RAW"
    )
    # The same process may ping once datagram sockets are allowed.
    clean.ping_group_range("0 2147483647")
    record, done = clean.anyprobe(backend, url(SERVER_V4), "count=1",
                                  preexec_fn=_without_cap_net_raw)  # fmt: skip
    assert done.returncode == 0, record["summary"]
    assert record["metrics"]["socket_type"] == "datagram"


# -- loss -----------------------------------------------------------------------


@BACKENDS
@SERVERS
def test_every_request_dropped_is_critical(clean: Hosts, backend: str, server: str) -> None:
    clean.nft("icmp type echo-request", "icmpv6 type echo-request")
    record, done = clean.anyprobe(
        backend, url(server), "count=3", "interval=0.02", "reply_timeout=0.3"
    )
    assert done.returncode == 2
    assert record["summary"] == f"no reply from {server} to 3 echo requests (100% loss)"
    assert record["error"]["phase"] == "rtt"
    assert record["metrics"]["loss_percent"] == 100
    assert clean.dropped() == 3


@BACKENDS
@SERVERS
@pytest.mark.parametrize(
    ("thresholds", "status"),
    [
        (("loss_warning=60",), "ok"),
        (("loss_warning=20", "loss_critical=60"), "warning"),
        (("loss_warning=20", "loss_critical=50"), "critical"),
    ],
)
def test_every_other_request_dropped_is_half_lost(
    clean: Hosts, backend: str, server: str, thresholds: tuple[str, ...], status: str
) -> None:
    clean.nft("icmp type echo-request numgen inc mod 2 == 0",
              "icmpv6 type echo-request numgen inc mod 2 == 0")  # fmt: skip
    record, _ = clean.anyprobe(
        backend, url(server), "count=4", "interval=0.02", "reply_timeout=0.3", *thresholds
    )
    assert record["status"] == status, record["summary"]
    assert record["summary"].startswith(f"2/4 replies from {server} (50% loss)")
    assert record["metrics"]["loss_percent"] == 50
    assert clean.dropped() == 2


@BACKENDS
def test_random_loss_is_the_loss_measured(clean: Hosts, backend: str) -> None:
    clean.nft("icmp type echo-request numgen random mod 10 < 5")
    record, _ = clean.anyprobe(
        backend, url(SERVER_V4), "count=20", "interval=0.01", "reply_timeout=0.3"
    )
    metrics = record["metrics"]
    assert metrics["packets_sent"] == 20
    assert metrics["packets_sent"] - metrics["packets_received"] == clean.dropped()
    assert metrics["loss_percent"] == 100 * clean.dropped() / 20


@BACKENDS
def test_netem_loss_is_measured(clean: Hosts, backend: str) -> None:
    done = _run("ip", "netns", "exec", clean.client, "tc", "qdisc", "replace", "dev",
                clean.device, "root", "netem", "loss", "100%", check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"the kernel has no netem qdisc: {done.stderr.strip()}")
    record, done_check = clean.anyprobe(backend, url(SERVER_V4), "count=2", "reply_timeout=0.3")
    assert done_check.returncode == 2
    assert record["metrics"]["loss_percent"] == 100


# -- TTL and unreachable hosts --------------------------------------------------


@BACKENDS
@SERVERS
def test_ttl_option_sets_the_requests_ttl(clean: Hosts, backend: str, server: str) -> None:
    # The server drops every echo request whose TTL (hop limit) is not 7.
    clean.nft("ip ttl != 7 icmp type echo-request", "ip6 hoplimit != 7 icmpv6 type echo-request")
    record, _ = clean.anyprobe(backend, url(server), "count=1", "reply_timeout=0.3")
    assert record["status"] == "critical"
    record, _ = clean.anyprobe(backend, url(server), "count=1", "ttl=7")
    assert record["status"] == "ok", record["summary"]


@BACKENDS
def test_no_route_is_critical(clean: Hosts, backend: str) -> None:
    record, done = clean.anyprobe(backend, url(UNROUTED_V4))
    assert done.returncode == 2
    assert record["summary"] == "network unreachable"
    assert record["error"]["phase"] == "rtt"


@BACKENDS
@pytest.mark.parametrize("socket_type", ["raw", "datagram"])
def test_absent_neighbour_is_host_unreachable(clean: Hosts, backend: str, socket_type: str) -> None:
    clean.ping_group_range("0 2147483647")
    record, done = clean.anyprobe(
        backend, url(ABSENT_V4), "count=1", "reply_timeout=3", f"socket_type={socket_type}"
    )
    assert done.returncode == 2
    assert record["summary"] == (
        f"no reply from {ABSENT_V4} to 1 echo requests (100% loss): "
        f"host unreachable (from {CLIENT_V4})"
    )
    assert record["error"]["phase"] == "rtt"


@BACKENDS
@pytest.mark.parametrize("socket_type", ["raw", "datagram"])
def test_errors_go_to_the_check_whose_request_failed(
    clean: Hosts, backend: str, socket_type: str
) -> None:
    # One run, one shared socket: an absent host's "host unreachable" must
    # not count against the checks of hosts that answer, nor a missing route
    # fail the others' requests.
    clean.ping_group_range("0 2147483647")
    options = f'count = 3\ninterval = 0.05\nreply_timeout = 3\nsocket_type = "{socket_type}"'
    records = run_config(
        clean.client,
        backend,
        checks_toml(
            ("first", SERVER_V4, options),
            ("absent", ABSENT_V4, options),
            ("unrouted", UNROUTED_V4, options),
            ("second", SERVER_V4, options),
            ("v6", SERVER_V6, options),
        ),
    )
    for name in ("first", "second", "v6"):
        assert records[name]["status"] == "ok", records[name]["summary"]
        assert records[name]["metrics"]["packets_received"] == 3
        assert records[name]["metrics"]["socket_type"] == socket_type
        assert icmp_errors(records[name]) == []
    assert len(icmp_errors(records["absent"])) >= 1
    assert records["absent"]["summary"] == (
        f"no reply from {ABSENT_V4} to 3 echo requests (100% loss): "
        f"host unreachable (from {CLIENT_V4})"
    )
    assert records["unrouted"]["summary"] == "network unreachable"


# -- a router between client and host ------------------------------------------

ROUTED_CLIENT = ("10.248.14.1", "fd00:248:14::1")
ROUTER_NEAR = ("10.248.14.2", "fd00:248:14::2")
ROUTER_FAR = ("10.248.15.1", "fd00:248:15::1")
FAR_HOST = ("10.248.15.2", "fd00:248:15::2")


@pytest.fixture(scope="module")
def routed(hosts: Hosts) -> Iterator[str]:
    """A client, a router and a host behind it (three more namespaces); the
    client's name. The router answers a request whose TTL runs out."""
    suffix = str(os.getpid())
    client, router, far = (f"anyprobe-i{n}{suffix}" for n in ("rc", "rr", "rf"))
    created: list[str] = []
    try:
        for namespace in (client, router, far):
            _run("ip", "netns", "add", namespace)
            created.append(namespace)
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
        for index, (left, right, left_addresses, right_addresses) in enumerate(
            ((client, router, ROUTED_CLIENT, ROUTER_NEAR), (router, far, ROUTER_FAR, FAR_HOST))
        ):
            left_dev, right_dev = f"ail{index}{suffix}"[:15], f"air{index}{suffix}"[:15]
            _run("ip", "-n", left, "link", "add", left_dev, "type", "veth", "peer", "name",
                 right_dev, "netns", right)  # fmt: skip
            for namespace, dev, (v4, v6) in (
                (left, left_dev, left_addresses),
                (right, right_dev, right_addresses),
            ):
                _run("ip", "-n", namespace, "addr", "add", f"{v4}/30", "dev", dev)
                _run("ip", "-n", namespace, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
                _run("ip", "-n", namespace, "link", "set", dev, "up")
        for namespace, (v4, v6) in ((client, ROUTER_NEAR), (far, ROUTER_FAR)):
            _run("ip", "-n", namespace, "route", "add", "default", "via", v4)
            _run("ip", "-n", namespace, "-6", "route", "add", "default", "via", v6)
        for setting in (
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ):
            _run("ip", "netns", "exec", router, "sysctl", "-qw", setting)
        _run("ip", "netns", "exec", client, "sysctl", "-qw",
             "net.ipv4.ping_group_range=0 2147483647")  # fmt: skip
        yield client
    finally:
        for namespace in created:
            _run("ip", "netns", "del", namespace, check=False)


@BACKENDS
@pytest.mark.parametrize("socket_type", ["raw", "datagram"])
@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_ttl_running_out_at_a_router_is_critical_and_names_it(
    hosts: Hosts, routed: str, backend: str, socket_type: str, family: int
) -> None:
    via = Hosts(routed, hosts.server, hosts.device)  # anyprobe runs in the routed client
    target = url(FAR_HOST[family])
    expired = "time to live exceeded" if family == 0 else "hop limit exceeded"
    record, done = via.anyprobe(
        backend, target, "count=1", "ttl=1", "reply_timeout=3", f"socket_type={socket_type}"
    )
    assert done.returncode == 2, record["summary"]
    assert record["summary"] == (
        f"no reply from {FAR_HOST[family]} to 1 echo requests (100% loss): "
        f"{expired} in transit (from {ROUTER_NEAR[family]})"
    )
    record, done = via.anyprobe(backend, target, "count=2", "interval=0.01", "ttl=2",
                                f"socket_type={socket_type}")  # fmt: skip
    assert done.returncode == 0, record["summary"]
    # The far host's replies leave with 64 and cross the router: one less.
    assert record["metrics"]["reply_ttl"] == 63


@BACKENDS
@pytest.mark.parametrize("socket_type", ["raw", "datagram"])
def test_ttl_exceeded_goes_to_the_check_with_that_ttl(
    hosts: Hosts, routed: str, backend: str, socket_type: str
) -> None:
    # Checks with TTL 1, 2 and the default to one host, in one run: the
    # router's "TTL exceeded" is about the TTL 1 requests alone.
    options = f'count = 2\ninterval = 0.02\nreply_timeout = 3\nsocket_type = "{socket_type}"'
    checks = [
        (f"{family} ttl {ttl}", FAR_HOST[index], f"{options}\nttl = {ttl}" if ttl else options)
        for index, family in enumerate(("ipv4", "ipv6"))
        for ttl in (1, 2, 0)
    ]
    records = run_config(routed, backend, checks_toml(*checks))
    for index, family in enumerate(("ipv4", "ipv6")):
        expired = "time to live exceeded" if index == 0 else "hop limit exceeded"
        assert records[f"{family} ttl 1"]["summary"] == (
            f"no reply from {FAR_HOST[index]} to 2 echo requests (100% loss): "
            f"{expired} in transit (from {ROUTER_NEAR[index]})"
        )
        assert len(icmp_errors(records[f"{family} ttl 1"])) == 2
        for ttl in (2, 0):
            record = records[f"{family} ttl {ttl}"]
            assert record["status"] == "ok", record["summary"]
            assert record["metrics"]["packets_received"] == 2
            assert icmp_errors(record) == []


@BACKENDS
def test_waiting_for_lost_replies_ends_before_the_checks_deadline(
    clean: Hosts, backend: str
) -> None:
    # reply_timeout is longer than the check's timeout: the wait stops
    # short of the deadline, so the verdict is the loss, not "timed out".
    clean.nft("icmp type echo-request")
    record, done = clean.anyprobe(
        backend, url(SERVER_V4), "count=2", "interval=0.1", "reply_timeout=30", timeout="1"
    )
    assert done.returncode == 2
    assert record["summary"] == f"no reply from {SERVER_V4} to 2 echo requests (100% loss)"
    assert record["error"]["type"] == "CheckFailed"  # the probe's verdict, not core's timeout
