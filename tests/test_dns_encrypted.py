"""DNS over TLS and DNS over HTTPS against the loopback responder with trustme
certificates, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import anyprobe
from anyprobe import PluginManager, Result, Status
from tests.servers.banner import TlsCa
from tests.servers.dns import DNS_MESSAGE, DnsServer

pytestmark = pytest.mark.anyio

Start = Callable[..., DnsServer]


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


def url(server: DnsServer, name: str = "www.example.test", record_type: str | None = None) -> str:
    query = f"?type={record_type}" if record_type else ""
    return f"dns://{server.address}/{name}{query}"


@pytest.fixture
def other_ca_file(tmp_path: Path) -> str:
    """A CA that signed none of the servers' certificates."""
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


async def test_dns_over_tls_answers_and_reports_the_certificate(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("tls")
    result = await check_one(
        manager, url(server), transport="tls", ca_file=str(tls_ca.ca_file), explain=True
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(
        f"A for www.example.test: 127.0.0.10, 127.0.0.11 (NOERROR from {server.address} over tls, "
    )
    assert "; certificate expires in 89.9 days" in result.summary or (
        "; certificate expires in 90.0 days" in result.summary
    )
    assert result.metrics["transport"] == "tls"
    assert result.metrics["server"] == server.address
    assert result.metrics["answers"] == ["127.0.0.10", "127.0.0.11"]
    assert result.metrics["tls_version"] == "TLSv1.3"
    assert 89 < result.metrics["cert_expiry_days"] <= 90
    assert {"resolve", "connect", "tls", "query"} <= set(result.phases)
    assert result.details["tls"]["certificates"][0]["sans"] == ["localhost", "127.0.0.1"]
    assert server.queries == {"tls": 1}


async def test_dns_over_https_posts_the_message_to_dns_query(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager,
        url(server, "example.test", "MX"),
        transport="https",
        ca_file=str(tls_ca.ca_file),
        expect_answers=["mail.example.test"],
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(
        "MX for example.test: 10 mail.example.test, 20 backup.example.test "
        f"(NOERROR from {server.address} over https, "
    )
    assert result.metrics["transport"] == "https"
    assert result.metrics["http_status"] == 200
    assert 89 < result.metrics["cert_expiry_days"] <= 90
    assert server.requests == [("POST", "/dns-query", server.address, DNS_MESSAGE)]
    assert server.queries == {"https": 1}


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_wrong_ca_is_critical(
    anyio_backend: str,
    manager: PluginManager,
    encrypted_dns_server: Start,
    other_ca_file: str,
    transport: str,
) -> None:
    server = encrypted_dns_server(transport)
    result = await check_one(manager, url(server), transport=transport, ca_file=other_ca_file)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("certificate issued by an unknown CA"), result.summary
    assert result.error is not None and result.error.phase == "tls"
    assert server.queries == {}
    unverified = await check_one(
        manager, url(server), transport=transport, ca_file=other_ca_file, verify=False
    )
    assert unverified.status is Status.OK, unverified.summary


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_server_that_never_answers_times_out_during_query(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    encrypted_dns_server: Start,
    transport: str,
) -> None:
    server = encrypted_dns_server(transport, silent=True)
    result = await check_one(
        manager, url(server), seconds=0.3, transport=transport, ca_file=str(tls_ca.ca_file)
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during query"
    assert result.metrics["server"] == server.address
    assert result.metrics["tls_version"] == "TLSv1.3"


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_server_that_never_handshakes_times_out_during_tls(
    anyio_backend: str, manager: PluginManager, quiet_port: int, transport: str
) -> None:
    result = await check_one(
        manager, f"dns://127.0.0.1:{quiet_port}/example.test", seconds=0.3, transport=transport
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during tls"


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_refused_port_is_critical(
    anyio_backend: str, manager: PluginManager, closed_port: int, transport: str
) -> None:
    result = await check_one(
        manager, f"dns://127.0.0.1:{closed_port}/example.test", transport=transport
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"query to 127.0.0.1:{closed_port} over {transport}: connection refused"
    )
    assert result.error is not None and result.error.phase == "connect"


@pytest.mark.parametrize(("transport", "port"), [("tls", 853), ("https", 443)])
async def test_default_port_follows_the_transport(
    anyio_backend: str, manager: PluginManager, transport: str, port: int
) -> None:
    # Nothing listens on this loopback address: the refusal names the port tried.
    result = await check_one(manager, "dns://127.83.53.1/example.test", transport=transport)
    assert result.status is Status.CRITICAL
    assert result.summary == f"query to 127.83.53.1:{port} over {transport}: connection refused"


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_expired_certificate_is_critical_and_says_when(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    encrypted_dns_server: Start,
    transport: str,
) -> None:
    server = encrypted_dns_server(transport, days_left=-3)
    result = await check_one(manager, url(server), transport=transport, ca_file=str(tls_ca.ca_file))
    assert result.status is Status.CRITICAL
    assert result.summary == "certificate expired 3 days ago"
    assert result.metrics["cert_expiry_days"] < -2.9
    assert result.error is not None and result.error.phase == "tls"


async def test_certificate_expiring_soon_turns_a_good_answer_into_a_warning(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("tls", days_left=10)
    result = await check_one(manager, url(server), transport="tls", ca_file=str(tls_ca.ca_file))
    assert result.status is Status.WARNING, result.summary
    assert result.summary.endswith("; certificate expires in 10.0 days") or (
        result.summary.endswith("; certificate expires in 9.9 days")
    )
    assert result.details["tls"]["certificates"][0]["sans"] == ["localhost", "127.0.0.1"]


async def test_wrong_answer_stays_critical_with_a_good_certificate(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager, url(server, "missing.example.test"), transport="https", ca_file=str(tls_ca.ca_file)
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(
        "A for missing.example.test: expected NOERROR, got NXDOMAIN "
        f"from {server.address} over https; certificate expires in "
    )


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_server_name_is_checked_and_sent(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    encrypted_dns_server: Start,
    transport: str,
) -> None:
    server = encrypted_dns_server(transport)
    options = {"transport": transport, "ca_file": str(tls_ca.ca_file)}
    good = await check_one(manager, url(server), server_name="localhost", **options)
    assert good.status is Status.OK, good.summary
    bad = await check_one(manager, url(server), server_name="dns.example.test", **options)
    assert bad.status is Status.CRITICAL
    assert (
        bad.summary
        == "certificate is not valid for dns.example.test (it names localhost, 127.0.0.1)"
    )
    if transport == "https":
        assert [r[2] for r in server.requests] == [f"localhost:{server.port}"]


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_refused_client_certificate_is_critical(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    encrypted_dns_server: Start,
    tmp_path: Path,
    transport: str,
) -> None:
    server = encrypted_dns_server(transport, require_client_cert=True)
    options = {"transport": transport, "ca_file": str(tls_ca.ca_file)}
    without = await check_one(manager, url(server), **options)
    assert without.status is Status.CRITICAL
    # TLS 1.3: the refusal arrives after the handshake, as the answer is read.
    assert without.summary == (
        f"query to {server.address} over {transport}: the server requires a client certificate"
    )
    assert without.error is not None and without.error.phase == "query"
    cert = tls_ca.client_cert_file(tmp_path)
    with_cert = await check_one(manager, url(server), client_cert=str(cert), **options)
    assert with_cert.status is Status.OK, with_cert.summary
    assert with_cert.metrics["client_cert_expiry_days"] > 300


async def test_doh_path_that_is_not_found_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager,
        url(server),
        transport="https",
        ca_file=str(tls_ca.ca_file),
        doh_path="/resolve",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"DNS over HTTPS: {server.address} answered POST /resolve with HTTP 404 Not Found"
    )
    assert result.metrics["http_status"] == 404
    assert server.requests[0][:2] == ("POST", "/resolve")


async def test_doh_answer_that_is_a_web_page_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager, url(server), transport="https", ca_file=str(tls_ca.ca_file), doh_path="/portal"
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"DNS over HTTPS: {server.address} answered POST /portal with text/html, "
        "not application/dns-message"
    )


async def test_doh_answer_that_is_not_http_is_critical_in_the_query_phase(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager, url(server), transport="https", ca_file=str(tls_ca.ca_file), doh_path="/not-http"
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(
        f"query to {server.address} over https: invalid HTTP response: "
    ), result.summary
    assert result.error is not None and result.error.phase == "query"
    assert result.error.type == "RemoteProtocolError"


async def test_doh_answer_longer_than_a_dns_message_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, encrypted_dns_server: Start
) -> None:
    server = encrypted_dns_server("https")
    result = await check_one(
        manager, url(server), transport="https", ca_file=str(tls_ca.ca_file), doh_path="/too-long"
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"DNS over HTTPS: the answer from {server.address} is longer than 65535 bytes"
    )
    assert result.metrics["http_status"] == 200
    assert set(result.phases) == {"resolve", "connect", "tls", "query"}


@pytest.mark.parametrize("transport", ["tls", "https"])
async def test_encrypted_transport_needs_a_server_in_the_url(
    anyio_backend: str, manager: PluginManager, transport: str
) -> None:
    result = await check_one(manager, "dns://www.example.test", transport=transport)
    assert result.status is Status.UNKNOWN
    assert result.summary.startswith(f"transport {transport} needs a server in the URL")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transport": "https", "doh_path": "dns-query"}, "must start with /"),
        ({"transport": "https", "doh_path": "/dns query"}, "without spaces"),
        ({"transport": "tls", "server_name": "not a name"}, "not a host name"),
    ],
)
def test_bad_encrypted_options_are_usage_errors(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(anyprobe.OptionsError, match=message):
        anyprobe.prepare(["dns://127.0.0.1/example.test"], options=options, manager=manager)
