"""``addresses = "first" | "all" | "any"``: checking every address a name resolves to.

The names below resolve through the system resolver's own entry point
(``anyio.getaddrinfo``) replaced for a few ``.test`` names, so that one name
gives several loopback addresses without editing /etc/hosts; the servers and
the connections are real (a listener on some of the addresses only).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Result, Status
from anyprobe.plugins._icmp_packets import NoIcmpSocket, open_socket

from .cli import anyprobe as run_cli
from .cli import assert_one_clear_line
from .servers.banner import TlsCa
from .servers.ssh import SshServer

pytestmark = pytest.mark.anyio


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = ipv6_available()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="no IPv6 loopback on this machine")

Names = Callable[..., None]


def _icmp_refused(family: int) -> str | None:
    try:
        sock, _kind = open_socket(family, "auto")
    except NoIcmpSocket as exc:
        return str(exc)
    sock.close()
    return None


_REFUSED_V4 = _icmp_refused(socket.AF_INET)
_ICMP_V6 = IPV6 and _icmp_refused(socket.AF_INET6) is None
needs_icmp = pytest.mark.skipif(_REFUSED_V4 is not None, reason=f"no ICMP socket: {_REFUSED_V4}")


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Names:
    """``names(NAME=[addresses])``: make ``NAME`` (``_`` read as ``.``)
    resolve to ``addresses``, in that order, for this test."""
    table: dict[str, list[str]] = {}
    real = anyio.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *, family: int = 0, **kwargs: Any) -> Any:
        if host not in table:
            return await real(host, port, family=family, **kwargs)
        if not table[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in table[host]:
            af = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (0, af):
                sockaddr = (address, port, 0, 0) if af == socket.AF_INET6 else (address, port)
                infos.append((af, socket.SOCK_STREAM, 6, "", sockaddr))
        if not infos:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family not supported")
        return infos

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)

    def add(**entries: list[str]) -> None:
        for name, addresses in entries.items():
            table[name.replace("_", ".")] = addresses

    return add


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    server.bind((address, port))
    server.listen(64)
    return server


@pytest.fixture
def listeners() -> Iterator[Callable[..., int]]:
    """``listeners("127.0.0.1", "::1")``: one port listening on exactly those
    addresses (connections accepted by the kernel, then left alone)."""
    opened: list[socket.socket] = []

    def listen(*addresses: str) -> int:
        port = 0
        for _ in range(20):  # the port the first gets may be taken on another
            first = _listen(addresses[0], port)
            port = first.getsockname()[1]
            group = [first]
            try:
                group += [_listen(address, port) for address in addresses[1:]]
            except OSError:
                for server in group:
                    server.close()
                port = 0
                continue
            opened.extend(group)
            return int(port)
        raise RuntimeError("no port free on every address")

    yield listen
    for server in opened:
        server.close()


async def check_one(manager: PluginManager, url: str, **options: Any) -> Result:
    [result] = await anyprobe.check([url], manager=manager, options=options)
    return result


def by_address(result: Result) -> dict[str, dict[str, Any]]:
    return {entry["address"]: entry for entry in result.details["addresses"]}


# -- tcp: the verdicts -------------------------------------------------------------------


async def test_first_checks_only_the_first_address_that_accepts(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.2")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    result = await check_one(manager, f"tcp://multi.test:{port}")
    assert result.status is Status.OK, result.summary
    assert "addresses" not in result.details
    assert "127.0.0.2" in result.summary


async def test_all_names_each_address_that_failed(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.1")
    names(multi_test=["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="all")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "2 of 3 addresses failed: 127.0.0.2: connection refused; 127.0.0.3: connection refused"
    )
    entries = by_address(result)
    assert [e["status"] for e in entries.values()] == ["ok", "critical", "critical"]
    assert entries["127.0.0.2"]["error"]["phase"] == "connect"
    assert set(entries["127.0.0.1"]["phases"]) == {"connect"}
    assert result.metrics["addresses_checked"] == 3
    assert result.metrics["addresses_failed"] == 2
    assert result.error is not None and result.error.phase == "connect"
    assert "resolve" in result.phases


async def test_all_is_ok_when_every_address_passes(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.1", "127.0.0.2")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="all")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("all 2 addresses ok: 127.0.0.1, 127.0.0.2 (")
    assert [e["status"] for e in result.details["addresses"]] == ["ok", "ok"]
    assert result.metrics["addresses_failed"] == 0


async def test_any_is_ok_when_one_address_passes_and_lists_the_others(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.2")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="any")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("1 of 2 addresses ok (127.0.0.2: ")
    assert result.summary.endswith("; 1 failed: 127.0.0.1: connection refused")
    assert result.error is None
    assert result.metrics["addresses_failed"] == 1


async def test_any_is_critical_when_no_address_passes(
    manager: PluginManager, names: Names, closed_port: int
) -> None:
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    result = await check_one(manager, f"tcp://multi.test:{closed_port}", addresses="any")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "2 of 2 addresses failed: 127.0.0.1: connection refused; 127.0.0.2: connection refused"
    )


@needs_ipv6
async def test_all_covers_ipv4_and_ipv6_addresses(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("::1")
    names(multi_test=["127.0.0.1", "::1"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="all")
    assert result.summary == "1 of 2 addresses failed: 127.0.0.1: connection refused"
    assert by_address(result)["::1"]["status"] == "ok"


@needs_ipv6
async def test_ip_family_limits_the_addresses_checked(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.1")
    names(multi_test=["::1", "127.0.0.1"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="all", ip_family="ipv4")
    assert result.status is Status.OK, result.summary
    assert list(by_address(result)) == ["127.0.0.1"]


async def test_one_address_keeps_the_probes_own_summary(
    manager: PluginManager, listening_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{listening_port}", addresses="all")
    assert result.status is Status.OK
    assert result.summary.startswith("connected to 127.0.0.1:")
    assert [e["address"] for e in result.details["addresses"]] == ["127.0.0.1"]


async def test_a_name_that_does_not_resolve_fails_in_resolve(
    manager: PluginManager, names: Names
) -> None:
    names(gone_test=[])
    result = await check_one(manager, "tcp://gone.test:80", addresses="all")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("cannot resolve gone.test")
    assert result.error is not None and result.error.phase == "resolve"


# -- a timeout on one address -------------------------------------------------------------


@pytest.fixture
def one_silent_address(listeners: Callable[..., int]) -> Iterator[int]:
    """A port listening on 127.0.0.1, whose SYNs go unanswered on 127.0.0.2
    (a listener there with a full backlog, as ``blackhole_port`` does)."""
    port = listeners("127.0.0.1")
    silent = _listen("127.0.0.2", port)
    silent.listen(0)
    fillers = []
    try:
        for _ in range(64):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.2", port))
            fillers.append(client)
            _, writable, _ = select.select([], [client], [], 0.2)
            if not writable:
                break
        yield port
    finally:
        for client in fillers:
            client.close()
        silent.close()


async def test_an_address_that_never_answers_times_out_alone(
    manager: PluginManager, names: Names, one_silent_address: int
) -> None:
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    [result] = await anyprobe.check(
        [f"tcp://multi.test:{one_silent_address}"],
        manager=manager,
        options={"addresses": "all"},
        timeout=2,
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "1 of 2 addresses failed: 127.0.0.2: timed out after 2 s during connect"
    )
    entries = by_address(result)
    assert entries["127.0.0.1"]["status"] == "ok"
    assert entries["127.0.0.2"]["error"]["type"] == "TimeoutError"


async def test_addresses_share_the_one_deadline_concurrently(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    # Both addresses accept and never send a byte: checked one after the
    # other, the second would have no time left; checked together, each
    # waits out the one deadline and says what it was waiting for.
    port = listeners("127.0.0.1", "127.0.0.2")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    [result] = await anyprobe.check(
        [f"tcp://multi.test:{port}"],
        manager=manager,
        options={"addresses": "all", "expect": "220"},
        timeout=2,
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("2 of 2 addresses failed: 127.0.0.1: timed out after 2 s")
    for entry in result.details["addresses"]:
        assert entry["summary"].startswith("timed out after 2 s during "), entry["summary"]
        assert "connect" in entry["phases"]


# -- every socket probe: one address down of two -------------------------------------------

#: (verdict for the mode, whether the summary names the refused address)
MODES = {"first": (Status.OK, False), "all": (Status.CRITICAL, True), "any": (Status.OK, True)}


def assert_partial_outage(result: Result, mode: str) -> None:
    """127.0.0.2 refuses, 127.0.0.1 answers: the verdict ``mode`` calls for."""
    status, named = MODES[mode]
    assert result.status is status, result.summary
    assert ("127.0.0.2: connection refused" in result.summary) is named, result.summary
    if mode == "first":
        assert "addresses" not in result.details
        return
    entries = by_address(result)
    assert list(entries) == ["127.0.0.2", "127.0.0.1"]
    assert entries["127.0.0.1"]["status"] == "ok", entries["127.0.0.1"]["summary"]
    assert entries["127.0.0.2"]["status"] == "critical"
    json.dumps(result.as_dict())  # the JSON Lines record holds every entry


@pytest.mark.parametrize("mode", list(MODES))
async def test_http_checks_each_address(manager: PluginManager, names: Names, mode: str) -> None:
    from anyprobe._http_server import serve_http

    from .servers.http import TestApp

    names(multi_test=["127.0.0.2", "127.0.0.1"])
    async with serve_http(TestApp()) as port:
        result = await check_one(manager, f"http://multi.test:{port}/ok", addresses=mode)
    assert_partial_outage(result, mode)
    if mode != "first":
        assert by_address(result)["127.0.0.1"]["metrics"]["http_status"] == 200
        assert set(by_address(result)["127.0.0.1"]["phases"]) >= {"connect", "first_byte"}


async def test_http_never_reuses_a_connection_to_another_address(
    manager: PluginManager, names: Names
) -> None:
    from .test_http_reuse import Wire, serve_keep_alive

    names(multi_test=["127.0.0.2", "127.0.0.1"])
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        # One after the other: the second finds the first's idle connection
        # to 127.0.0.1 in the pool, which its check of 127.0.0.2 (started
        # first) must not take; its check of 127.0.0.1 may.
        results = await anyprobe.check(
            [f"http://multi.test:{port}/ok?n={n}" for n in range(2)],
            manager=manager,
            options={"addresses": "all", "reuse_connections": True},
            concurrency=1,
            ordered=True,
        )
        await wire.all_closed()
    for result in results:
        assert result.summary.startswith("1 of 2 addresses failed: 127.0.0.2: connection refused")
    assert by_address(results[1])["127.0.0.1"]["metrics"]["connection_reused"] is True
    assert wire.accepted == 1


@pytest.mark.parametrize("mode", list(MODES))
async def test_tls_checks_each_address(
    manager: PluginManager,
    names: Names,
    mode: str,
    tls_ca: TlsCa,
    tls_server: Callable[..., int],
) -> None:
    port = tls_server()
    names(multi_test=["127.0.0.2", "127.0.0.1"])
    result = await check_one(
        manager,
        f"tls://multi.test:{port}",
        addresses=mode,
        ca_file=str(tls_ca.ca_file),
        server_name="localhost",
        expect="220",
    )
    assert_partial_outage(result, mode)
    if mode != "first":
        assert by_address(result)["127.0.0.1"]["metrics"]["cert_expiry_days"] > 80


@pytest.mark.parametrize("mode", list(MODES))
async def test_ssh_checks_each_address(
    manager: PluginManager, names: Names, mode: str, ssh_server: SshServer
) -> None:
    names(multi_test=["127.0.0.2", "127.0.0.1"])
    result = await check_one(
        manager,
        f"ssh://probe@multi.test:{ssh_server.port}",
        addresses=mode,
        host_key_fingerprint=ssh_server.host_key_fingerprint,
    )
    assert_partial_outage(result, mode)


@pytest.mark.parametrize("mode", list(MODES))
async def test_grpc_checks_each_address(manager: PluginManager, names: Names, mode: str) -> None:
    pytest.importorskip("grpc", reason="the grpc:// tests need grpcio")
    pytest.importorskip("grpc_health.v1.health", reason="needs grpcio-health-checking")
    from .servers.grpc_servers import SERVING, grpc_server

    names(multi_test=["127.0.0.2", "127.0.0.1"])
    with grpc_server(statuses={"": SERVING}) as server:
        result = await check_one(manager, f"grpc://multi.test:{server.port}", addresses=mode)
    assert_partial_outage(result, mode)


@pytest.mark.parametrize("mode", list(MODES))
async def test_websocket_checks_each_address(
    manager: PluginManager, names: Names, mode: str, ws_server: int
) -> None:
    names(multi_test=["127.0.0.2", "127.0.0.1"])
    result = await check_one(
        manager, f"ws://multi.test:{ws_server}/echo", addresses=mode, send="hi", expect="hi"
    )
    assert_partial_outage(result, mode)


async def test_https_verifies_each_address_against_the_name(
    manager: PluginManager, names: Names, http_ca: Any, http_ca_file: str
) -> None:
    from .servers.http import server_context, threaded_tls_server

    # The certificate names localhost: SNI and verification use the name at
    # every address.
    names(localhost=["127.0.0.2", "127.0.0.1"])
    with threaded_tls_server(server_context(http_ca, "localhost")) as port:
        result = await check_one(
            manager, f"https://localhost:{port}/", addresses="all", ca_file=http_ca_file
        )
    assert_partial_outage(result, "all")
    entry = by_address(result)["127.0.0.1"]
    assert entry["metrics"]["http_status"] == 200
    assert "tls" in entry["phases"]


async def test_wss_checks_each_address(
    manager: PluginManager, names: Names, wss_server: int, tls_ca: TlsCa
) -> None:
    names(localhost=["127.0.0.2", "127.0.0.1"])
    result = await check_one(
        manager,
        f"wss://localhost:{wss_server}/echo",
        addresses="any",
        ca_file=str(tls_ca.ca_file),
        send="x",
        expect="x",
    )
    assert_partial_outage(result, "any")
    assert by_address(result)["127.0.0.1"]["metrics"]["cert_expiry_days"] > 80


@needs_icmp
@pytest.mark.parametrize("mode", ["all", "any"])
async def test_icmp_pings_each_address(manager: PluginManager, names: Names, mode: str) -> None:
    loopbacks = ["127.0.0.1", "127.0.0.2", *(["::1"] if IPV6 and _ICMP_V6 else [])]
    names(multi_test=loopbacks)
    result = await check_one(manager, "icmp://multi.test", addresses=mode, count=2, interval=0.01)
    assert result.status is Status.OK, result.summary
    entries = by_address(result)
    assert list(entries) == loopbacks
    for address, entry in entries.items():
        assert entry["status"] == "ok", entry["summary"]
        assert entry["metrics"]["address"] == address
        assert entry["metrics"]["packets_received"] == 2
    assert result.summary.startswith(f"all {len(loopbacks)} addresses ok: 127.0.0.1, 127.0.0.2")


@needs_icmp
async def test_icmp_ip_family_pings_only_that_family(manager: PluginManager, names: Names) -> None:
    names(multi_test=["::1", "127.0.0.2"])
    result = await check_one(
        manager, "icmp://multi.test", addresses="all", ip_family="ipv4", count=1
    )
    assert result.status is Status.OK, result.summary
    assert list(by_address(result)) == ["127.0.0.2"]


# -- thresholds, the trace, the reports ----------------------------------------------------


async def test_latency_thresholds_apply_to_each_address(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.1", "127.0.0.2")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    # No connect takes less than a nanosecond: every address is over it.
    result = await check_one(
        manager, f"tcp://multi.test:{port}", addresses="all", warning_after=1e-9
    )
    assert result.status is Status.WARNING
    assert result.summary.startswith("2 of 2 addresses not ok: 127.0.0.1: warning: connected")
    assert "over warning_after 1e-09 s" in result.summary
    assert [e["status"] for e in result.details["addresses"]] == ["warning", "warning"]


async def test_explain_traces_each_address(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    port = listeners("127.0.0.1")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    [result] = await anyprobe.check(
        [f"tcp://multi.test:{port}"], manager=manager, options={"addresses": "all"}, explain=True
    )
    lines = [event.message for event in result.trace]
    assert lines[0] == (
        "resolved multi.test to 127.0.0.1, 127.0.0.2; checking each address (addresses = 'all')"
    )
    assert f"[127.0.0.1] connected to 127.0.0.1 port {port}" in lines
    assert "[127.0.0.2] critical: connection refused" in lines
    assert lines.index("[127.0.0.1] ok: " + by_address(result)["127.0.0.1"]["summary"]) < (
        lines.index("[127.0.0.2] critical: connection refused")
    )


def _series(text: str, name: str) -> dict[str, float]:
    """The samples of ``name`` in an exposition, by their ``address`` label ("" without)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels.get("address", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def test_prometheus_output_has_a_series_per_address(
    manager: PluginManager, names: Names, listeners: Callable[..., int]
) -> None:
    from anyprobe.plugins.prometheus import exposition

    port = listeners("127.0.0.1")
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    result = await check_one(manager, f"tcp://multi.test:{port}", addresses="all")
    text = exposition([result])
    assert _series(text, "probe_success") == {"": 0.0, "127.0.0.1": 1.0, "127.0.0.2": 0.0}
    assert _series(text, "anyprobe_status") == {"": 2.0, "127.0.0.1": 0.0, "127.0.0.2": 2.0}
    durations = _series(text, "probe_duration_seconds")
    assert set(durations) == {"", "127.0.0.1", "127.0.0.2"}
    assert durations["127.0.0.1"] == by_address(result)["127.0.0.1"]["duration"]


async def test_serve_checks_each_allowed_address_and_refuses_the_others(
    manager: PluginManager, names: Names, listeners: Callable[..., int], tmp_path: Path
) -> None:
    from .test_serve import get, running

    port = listeners("127.0.0.1")
    outside = _listen("127.0.0.2", port)  # never to be connected to
    outside.setblocking(False)
    names(multi_test=["127.0.0.1", "127.0.0.2"])
    config = tmp_path / "serve.toml"
    config.write_text(
        '[module.every]\nprobe = "tcp"\naddresses = "all"\n'
        '[module.one]\nprobe = "tcp"\naddresses = "any"\n'
        '[serve]\nallow_targets = ["127.0.0.1/32"]\n'
    )
    target = f"tcp://multi.test:{port}"
    with outside:
        async with running(manager, config) as url:
            every = await get(f"{url}/probe", params={"target": target, "module": "every"})
            one = await get(f"{url}/probe", params={"target": target, "module": "one"})
            debug = await get(
                f"{url}/probe", params={"target": target, "module": "every", "debug": "true"}
            )
        with pytest.raises(BlockingIOError):
            outside.accept()
    assert every.status_code == 200, every.text
    assert _series(every.text, "probe_success") == {"": 0.0, "127.0.0.1": 1.0, "127.0.0.2": 0.0}
    assert _series(one.text, "probe_success") == {"": 1.0, "127.0.0.1": 1.0, "127.0.0.2": 0.0}
    assert (
        "1 of 2 addresses failed: 127.0.0.2: multi.test resolves to 127.0.0.2, "
        "which is not in allow_targets" in debug.text
    ), debug.text


# -- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "sets", "fragment"),
    [
        ("tcp://127.0.0.1:1", ["addresses=every"], "'first', 'all' or 'any'"),
        ("icmp://127.0.0.1", ["addresses=2"], "'first', 'all' or 'any'"),
        (
            "http://127.0.0.1:1/",
            ["addresses=all", "proxy=http://127.0.0.1:3128"],
            "cannot go through a proxy",
        ),
    ],
)
def test_a_bad_addresses_value_is_one_line_and_exit_3(
    target: str, sets: list[str], fragment: str
) -> None:
    args = [arg for value in sets for arg in ("--set", value)]
    proc = run_cli("check", target, *args)
    line = assert_one_clear_line(proc, fragment)
    assert "addresses" in line


def test_probes_that_do_not_connect_by_name_have_no_addresses_option() -> None:
    proc = run_cli("check", "dns://127.0.0.1/example.com", "--set", "addresses=all")
    assert_one_clear_line(proc, "addresses")
