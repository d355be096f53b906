"""The DNS probe against a real responder on loopback (UDP and TCP), on both backends."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyprobe
from anyprobe import PluginManager, Result, Status
from tests.servers.dns import DnsServer
from tests.servers.udp import UdpEchoServer

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


def url(server: DnsServer, name: str, record_type: str | None = None) -> str:
    query = f"?type={record_type}" if record_type else ""
    return f"dns://{server.address}/{name}{query}"


async def test_a_record_is_ok_with_answers_and_metrics(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "www.example.test"), explain=True)
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("A for www.example.test: 127.0.0.10, 127.0.0.11 (NOERROR")
    assert result.metrics["rcode"] == "NOERROR"
    assert result.metrics["answer_count"] == 2
    assert result.metrics["answers"] == ["127.0.0.10", "127.0.0.11"]
    assert result.metrics["server"] == dns_server.address
    assert result.metrics["transport"] == "udp"
    assert result.metrics["min_ttl"] == 60
    assert result.metrics["authoritative"] is True
    assert "query" in result.phases
    assert result.details["answer"][0].startswith("www.example.test. 60 IN A")
    assert any(e.message.startswith("asking ") for e in result.trace)


async def test_passing_check_keeps_details_for_explain_only(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "www.example.test"))
    assert result.status is Status.OK, result.summary
    assert result.details == {}


@pytest.mark.parametrize(
    ("name", "record_type", "answers"),
    [
        ("www.example.test", "AAAA", ["::1"]),
        ("alias.example.test", "CNAME", ["www.example.test"]),
        ("example.test", "MX", ["10 mail.example.test", "20 backup.example.test"]),
        ("example.test", "NS", ["ns1.example.test", "ns2.example.test"]),
        ("example.test", "TXT", ["v=spf1 -all"]),
        (
            "example.test",
            "SOA",
            ["ns1.example.test hostmaster.example.test 2024010101 3600 600 86400 300"],
        ),
        ("_imap._tcp.example.test", "SRV", ["0 5 143 mail.example.test"]),
        ("127.0.0.1", "PTR", ["localhost.example.test"]),
        ("example.test", "CAA", ['0 issue "ca.example.test"']),
    ],
)
async def test_record_types(
    anyio_backend: str,
    manager: PluginManager,
    dns_server: DnsServer,
    name: str,
    record_type: str,
    answers: list[str],
) -> None:
    result = await check_one(manager, url(dns_server, name, record_type))
    assert result.status is Status.OK, result.summary
    assert result.metrics["answers"] == answers


async def test_record_type_option_applies_when_the_url_has_none(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "example.test"), record_type="mx")
    assert result.status is Status.OK, result.summary
    assert result.metrics["record_type"] == "MX"
    assert result.metrics["answer_count"] == 2


async def test_a_through_a_cname_counts_only_the_a_records(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(
        manager, url(dns_server, "alias.example.test"), explain=True, expect_answers=["127.0.0.11"]
    )
    assert result.status is Status.OK, result.summary
    assert result.metrics["answers"] == ["127.0.0.10", "127.0.0.11"]
    assert any("CNAME" in line for line in result.details["answer"])


async def test_nxdomain_is_critical_by_default(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "missing.example.test"))
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"A for missing.example.test: expected NOERROR, got NXDOMAIN from {dns_server.address}"
    )
    assert result.metrics["rcode"] == "NXDOMAIN"
    assert result.details["authority"][0].startswith("example.test. 3600 IN SOA")


async def test_nxdomain_can_be_the_expected_answer(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(
        manager, url(dns_server, "missing.example.test"), expect_rcode="nxdomain"
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("A for missing.example.test: NXDOMAIN, as expected")


async def test_servfail_is_critical(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "servfail.example.test"))
    assert result.status is Status.CRITICAL
    assert "expected NOERROR, got SERVFAIL" in result.summary


async def test_refused_outside_the_zone_is_critical(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "example.org"))
    assert result.status is Status.CRITICAL
    assert "expected NOERROR, got REFUSED" in result.summary


async def test_no_records_is_critical_unless_min_answers_is_zero(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    target = url(dns_server, "nodata.example.test")
    result = await check_one(manager, target)
    assert result.status is Status.CRITICAL
    assert "NOERROR but no A records" in result.summary
    assert result.metrics["answer_count"] == 0
    result = await check_one(manager, target, min_answers=0)
    assert result.status is Status.OK, result.summary
    assert "no records" in result.summary


async def test_min_answers(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    target = url(dns_server, "www.example.test")
    assert (await check_one(manager, target, min_answers=2)).status is Status.OK
    result = await check_one(manager, target, min_answers=3)
    assert result.status is Status.CRITICAL
    assert "expected at least 3 answers, got 2: 127.0.0.10, 127.0.0.11" in result.summary


async def test_wrong_mx_says_what_was_expected_and_found(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(
        manager, url(dns_server, "mx2.example.test", "MX"), expect_answers=["mail.example.test"]
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "MX for mx2.example.test: expected mail.example.test, got 10 mx2.example.test"
    )


async def test_expect_answers_needs_all_of_them(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    target = url(dns_server, "example.test", "MX")
    ok = await check_one(
        manager, target, expect_answers=["mail.example.test.", "20 BACKUP.example.test"]
    )
    assert ok.status is Status.OK, ok.summary
    bad = await check_one(manager, target, expect_answers=["mail.example.test", "mx9.example.test"])
    assert bad.status is Status.CRITICAL
    assert "expected mx9.example.test, got 10 mail.example.test" in bad.summary


async def test_expect_any_answer(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    target = url(dns_server, "www.example.test")
    ok = await check_one(manager, target, expect_any_answer=["10.0.0.1", "127.0.0.11"])
    assert ok.status is Status.OK, ok.summary
    bad = await check_one(manager, target, expect_any_answer=["10.0.0.1", "10.0.0.2"])
    assert bad.status is Status.CRITICAL
    assert "expected one of 10.0.0.1, 10.0.0.2, got 127.0.0.10, 127.0.0.11" in bad.summary


async def test_ipv6_answers_compare_in_canonical_form(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(
        manager, url(dns_server, "www.example.test", "AAAA"), expect_answers=["0:0::0:1"]
    )
    assert result.status is Status.OK, result.summary


async def test_answer_regexes(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    target = url(dns_server, "www.example.test")
    assert (await check_one(manager, target, answers_match=r"^127\.")).status is Status.OK
    every = await check_one(manager, target, answers_match=r"\.10$")
    assert every.status is Status.CRITICAL
    assert "127.0.0.11 do not match /\\.10$/" in every.summary
    assert (await check_one(manager, target, any_answer_matches=r"\.11$")).status is Status.OK
    some = await check_one(manager, target, any_answer_matches=r"^10\.")
    assert some.status is Status.CRITICAL
    assert "no answer matches /^10\\./" in some.summary


async def test_truncated_udp_answer_is_retried_over_tcp(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "big.example.test", "TXT"), edns=False)
    assert result.status is Status.OK, result.summary
    assert result.metrics["answer_count"] == 8
    assert result.metrics["transport"] == "tcp"
    assert "over tcp" in result.summary
    assert dns_server.queries == {"udp": 1, "tcp": 1}


async def test_a_long_answer_is_cut_short_in_the_summary(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "big.example.test", "TXT"), edns=False)
    assert result.status is Status.OK, result.summary
    assert "x" * 150 in result.summary
    assert "x" * 201 not in result.summary
    assert "..." in result.summary


async def test_tcp_transport(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "www.example.test"), transport="tcp")
    assert result.status is Status.OK, result.summary
    assert result.metrics["transport"] == "tcp"
    assert dns_server.queries == {"tcp": 1}


async def test_tcp_connection_closed_without_an_answer_is_critical(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    result = await check_one(manager, url(dns_server, "closes.example.test"), transport="tcp")
    assert result.status is Status.CRITICAL, result.summary
    assert "closed the connection before a complete answer" in result.summary


async def test_recursion_desired_flag_is_sent_or_not(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    # The responder echoes RD in its response, as every server must.
    target = url(dns_server, "www.example.test")
    result = await check_one(manager, target, recursion_desired=False)
    assert result.status is Status.OK, result.summary


async def test_udp_port_that_never_answers_times_out(
    anyio_backend: str, manager: PluginManager, silent_udp_port: int
) -> None:
    result = await check_one(
        manager, f"dns://127.0.0.1:{silent_udp_port}/example.test", seconds=0.3
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during query"
    assert result.metrics["server"] == f"127.0.0.1:{silent_udp_port}"
    assert result.error is not None and result.error.phase == "query"


async def test_closed_udp_port_is_refused_without_waiting_for_the_timeout(
    anyio_backend: str, manager: PluginManager, closed_udp_port: int
) -> None:
    # The ICMP port unreachable ends the check, as dig's "connection refused":
    # with a 30 s timeout, a check that missed it would be cut short by the
    # test's own limit instead.
    with anyio.fail_after(10):
        result = await check_one(
            manager, f"dns://127.0.0.1:{closed_udp_port}/example.test", seconds=30
        )
    assert result.status is Status.CRITICAL
    assert result.summary == f"query to 127.0.0.1:{closed_udp_port} over udp: connection refused"
    assert result.error is not None and result.error.phase == "query"


async def test_a_datagram_that_is_not_the_response_is_malformed(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    # The echo sends the query itself back: DNS, but not a response to it.
    result = await check_one(manager, f"dns://127.0.0.1:{udp_echo_server.port}/example.test")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"malformed response from 127.0.0.1:{udp_echo_server.port}: ")
    assert len(udp_echo_server.received) == 1


async def test_refused_tcp_port_is_critical(
    anyio_backend: str, manager: PluginManager, closed_port: int
) -> None:
    result = await check_one(
        manager, f"dns://127.0.0.1:{closed_port}/example.test", transport="tcp"
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (f"query to 127.0.0.1:{closed_port} over tcp: connection refused")


async def test_system_resolver_configuration_is_used_without_a_server(
    anyio_backend: str, manager: PluginManager, dns_server_on_port_53: DnsServer, tmp_path: Path
) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search example.test\nnameserver {dns_server_on_port_53.host}\n")
    result = await check_one(manager, "dns://www.example.test", resolv_conf=str(conf))
    assert result.status is Status.OK, result.summary
    assert result.metrics["server"] == f"{dns_server_on_port_53.host}:53"
    assert result.metrics["answers"] == ["127.0.0.10", "127.0.0.11"]


async def test_system_resolver_tries_the_next_nameserver(
    anyio_backend: str, manager: PluginManager, dns_server_on_port_53: DnsServer, tmp_path: Path
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with silent:
        # Port 53 of another loopback address, bound and never answering.
        silent.bind(("127.0.0.1", 0))
        conf = tmp_path / "resolv.conf"
        conf.write_text(f"nameserver 127.255.255.254\nnameserver {dns_server_on_port_53.host}\n")
        result = await check_one(
            manager, "dns:///www.example.test", resolv_conf=str(conf), seconds=1.0
        )
    assert result.status is Status.OK, result.summary
    assert result.metrics["server"] == f"{dns_server_on_port_53.host}:53"


async def test_missing_resolv_conf_is_refused_before_the_run(
    anyio_backend: str, manager: PluginManager, tmp_path: Path
) -> None:
    with pytest.raises(anyprobe.OptionsError, match=r"resolv_conf .*absent\.conf does not exist"):
        await check_one(
            manager, "dns://www.example.test", resolv_conf=str(tmp_path / "absent.conf")
        )


async def test_resolv_conf_without_nameservers_is_unknown(
    anyio_backend: str, manager: PluginManager, tmp_path: Path
) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.test\n")
    result = await check_one(manager, "dns://www.example.test", resolv_conf=str(conf))
    assert result.status is Status.UNKNOWN
    assert result.summary == f"no nameserver in {conf}"


async def test_dnsmasq_interop(
    anyio_backend: str, manager: PluginManager, dnsmasq_server: tuple[str, int]
) -> None:
    host, port = dnsmasq_server
    server = f"dns://{host}:{port}"
    a = await check_one(manager, f"{server}/www.example.test", expect_answers=["127.0.0.2"])
    assert a.status is Status.OK, a.summary
    host_record = await check_one(
        manager, f"{server}/host.example.test?type=AAAA", expect_answers=["::3"]
    )
    assert host_record.status is Status.OK, host_record.summary
    mx = await check_one(manager, f"{server}/mail.test?type=MX", expect_answers=["mx.mail.test"])
    assert mx.status is Status.OK, mx.summary
    txt = await check_one(
        manager, f"{server}/txt.example.test?type=TXT", expect_answers=["hello dnsmasq"]
    )
    assert txt.status is Status.OK, txt.summary
    over_tcp = await check_one(manager, f"{server}/host.example.test", transport="tcp")
    assert over_tcp.status is Status.OK, over_tcp.summary
    assert over_tcp.metrics["answers"] == ["127.0.0.3"]
    gone = await check_one(manager, f"{server}/gone.test", expect_rcode="NXDOMAIN")
    assert gone.status is Status.OK, gone.summary
    wrong = await check_one(manager, f"{server}/host.example.test", expect_answers=["10.9.9.9"])
    assert wrong.status is Status.CRITICAL
    assert wrong.summary == "A for host.example.test: expected 10.9.9.9, got 127.0.0.3"


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins._demo_dns import demo_services

    async with demo_services() as checks:
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)


# -- URLs and options -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("dns://9.9.9.9/example.com?type=AAAA", "9.9.9.9", 53),
        ("dns://[::1]:5353/example.com", "::1", 5353),
        ("dns://ns1.example.com/www.example.com", "ns1.example.com", 53),
        ("dns://Example.COM?type=mx", "example.com", None),
        ("dns:///example.com", "example.com", None),
    ],
)
def test_target_host_is_the_server_or_the_name(
    manager: PluginManager, text: str, host: str, port: int | None
) -> None:
    _, [target] = anyprobe.prepare([text], manager=manager)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dns://", "no name to look up"),
        ("dns://9.9.9.9/a/b", "one path segment expected"),
        ("dns://example.com?class=CH", "unknown URL parameter 'class'"),
        ("dns://example.com?type=BOGUS", "unknown record type 'BOGUS'"),
        ("dns://example.com?type=IXFR", "IXFR is not a record type one can query"),
        ("dns://example.com:53", "a port needs a server"),
        ("dns://user@9.9.9.9/example.com", "no user or password"),
        (f"dns://{'a' * 64}.example", "at most 63"),
    ],
)
def test_bad_urls_are_target_errors(manager: PluginManager, text: str, message: str) -> None:
    with pytest.raises(anyprobe.TargetError, match=message):
        anyprobe.prepare([text], manager=manager)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"record_type": "NOPE"}, "unknown record type"),
        ({"record_class": "XX"}, "unknown record class"),
        ({"expect_rcode": "OOPS"}, "unknown response code"),
        ({"answers_match": "("}, "not a regular expression"),
        ({"expect_rcode": "NXDOMAIN", "expect_answers": ["x"]}, "expect_rcode NOERROR"),
        ({"transport": "quic"}, "udp"),
        ({"min_answers": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_options_are_usage_errors(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(anyprobe.OptionsError, match=message):
        anyprobe.prepare(["dns://example.com"], options=options, manager=manager)


@given(st.text(max_size=40))
def test_any_dns_url_is_a_target_or_one_clear_error(tail: str) -> None:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    try:
        anyprobe.prepare([f"dns://{tail}"], manager=manager)
    except anyprobe.UsageError as exc:
        assert str(exc) and "\n" not in str(exc)
