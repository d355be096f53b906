"""The TCP probe: connect, send/expect, tls:// and STARTTLS, against loopback
servers, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status
from anyprobe.plugins.tcp import show_bytes, unescape
from tests.servers.banner import TlsCa

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


# -- plain TCP ------------------------------------------------------------------


async def test_connect_only(anyio_backend: str, manager: PluginManager, banner_port: int) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{banner_port}")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"connected to 127.0.0.1:{banner_port} in ")
    assert set(result.phases) == {"resolve", "connect"}
    assert result.metrics == {"address": "127.0.0.1", "port": banner_port}


async def test_refused_is_critical(
    anyio_backend: str, manager: PluginManager, closed_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{closed_port}")
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_banner_matches_expect(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{banner_port}", expect="220 ")
    assert result.status is Status.OK, result.summary
    assert "got '220 ' in " in result.summary
    assert "first_byte" in result.phases
    assert result.metrics["bytes_received"] == len(b"220 banner.test ESMTP ready\r\n")


async def test_banner_matches_expect_regex(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://127.0.0.1:{banner_port}", expect_regex=r"^220 \S+ ESMTP"
    )
    assert result.status is Status.OK, result.summary
    assert "got /^220 \\S+ ESMTP/" in result.summary


async def test_send_then_expect_the_reply(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager,
        f"tcp://127.0.0.1:{banner_port}",
        send=r"PING 42\r\n",
        expect=r"ECHO PING 42\r\n",
        quit=r"QUIT\r\n",
    )
    assert result.status is Status.OK, result.summary
    # The server echoed what was sent, which is masked (send is a secret).
    assert result.summary.endswith("; got 'ECHO ***' in 43 bytes")


async def test_what_is_sent_never_shows_in_the_result(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager,
        f"tcp://127.0.0.1:{banner_port}",
        send=r"AUTH s3cret-token\r\n",
        expect="no such reply",
        max_bytes=30,
        explain=True,
    )
    assert result.status is Status.CRITICAL
    assert "s3cret" not in repr(result.as_dict())


async def test_banner_mismatch_says_what_came(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://127.0.0.1:{banner_port}", expect="SSH-2.0", max_bytes=16
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "expected 'SSH-2.0' in the first 16 bytes; got '220 banner.test ' (16 bytes)"
    )
    # The banner comes in one segment: the first read fills max_bytes.
    assert result.error is not None and result.error.phase == "first_byte"


async def test_server_that_never_sends_fails_after_expect_timeout(
    anyio_backend: str, manager: PluginManager, quiet_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://127.0.0.1:{quiet_port}", expect="220", expect_timeout=0.2
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "expected '220' within 0.2 s; got nothing"
    assert result.error is not None and result.error.phase == "first_byte"


async def test_server_that_never_sends_hits_the_check_timeout(
    anyio_backend: str, manager: PluginManager, quiet_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{quiet_port}", seconds=0.3, expect="x")
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during first_byte: expected 'x', got nothing"
    assert result.error is not None and result.error.phase == "first_byte"
    assert result.error.type == "TimeoutError"


async def test_expect_not_met_before_the_timeout_says_what_the_server_sent(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://127.0.0.1:{banner_port}", seconds=0.5, explain=True, expect="SSH-2.0"
    )
    assert result.status is Status.CRITICAL
    got = "got '220 banner.test ESMTP ready\\r\\n' (29 bytes)"
    assert result.summary == f"timed out after 0.5 s during transfer: expected 'SSH-2.0', {got}"
    assert result.error is not None and result.error.type == "TimeoutError"
    assert result.metrics["bytes_received"] == 29
    assert f"the deadline came before 'SSH-2.0'; {got}" in [e.message for e in result.trace]


async def test_trickling_server_is_read_to_the_end(
    anyio_backend: str, manager: PluginManager, trickle_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{trickle_port}", expect="banner")
    assert result.status is Status.OK, result.summary
    assert result.metrics["bytes_received"] == len(b"220 slow banner")
    assert {"first_byte", "transfer"} <= set(result.phases)


async def test_trickling_server_too_slow_for_expect_timeout(
    anyio_backend: str, manager: PluginManager, trickle_port: int
) -> None:
    # 17 bytes 20 ms apart cannot all come within 0.1 s; some of them do.
    result = await check_one(
        manager, f"tcp://127.0.0.1:{trickle_port}", expect="banner", expect_timeout=0.1
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("expected 'banner' within 0.1 s; got '2")
    assert 0 < result.metrics["bytes_received"] < len(b"220 slow banner")


async def test_reset_connection_is_critical(
    anyio_backend: str, manager: PluginManager, resetting_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{resetting_port}", expect="220")
    assert result.status is Status.CRITICAL
    assert result.summary == "expected '220', but connection reset by peer; got nothing"
    assert result.error is not None and result.error.type == "ConnectionResetError"


async def test_closed_before_the_expected_text(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://127.0.0.1:{banner_port}", send=r"QUIT\r\n", expect="never"
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(
        "expected 'never', but the server closed the connection; got '220 banner.test"
    )


# -- tls:// ---------------------------------------------------------------------


async def test_tls_with_a_valid_certificate(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server(days_left=90)
    result = await check_one(
        manager,
        f"tls://localhost:{port}",
        ca_file=str(tls_ca.ca_file),
        ip_family="ipv4",
        expect="220",
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"TLSv1.3 to 127.0.0.1:{port} in ")
    assert "certificate expires in 89.9 days" in result.summary or "in 90.0 days" in (
        result.summary
    )
    assert {"resolve", "connect", "tls", "first_byte"} <= set(result.phases)
    assert result.metrics["tls_version"] == "TLSv1.3"
    assert 89 < result.metrics["cert_expiry_days"] <= 90
    assert result.details["tls"]["certificates"][0]["sans"] == ["localhost", "127.0.0.1"]


async def test_tls_send_and_expect_over_tls(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server()
    result = await check_one(
        manager,
        f"tls://127.0.0.1:{port}",
        ca_file=str(tls_ca.ca_file),
        send=r"hello\r\n",
        expect="ECHO hello",
    )
    assert result.status is Status.OK, result.summary


async def test_certificate_expiring_soon_is_a_warning(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server(days_left=10)
    result = await check_one(manager, f"tls://127.0.0.1:{port}", ca_file=str(tls_ca.ca_file))
    assert result.status is Status.WARNING, result.summary
    assert result.summary.endswith("certificate expires in 10.0 days") or result.summary.endswith(
        "certificate expires in 9.9 days"
    )


async def test_certificate_inside_the_critical_threshold_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server(days_left=10)
    result = await check_one(
        manager,
        f"tls://127.0.0.1:{port}",
        ca_file=str(tls_ca.ca_file),
        cert_expiry_warning_days=30,
        cert_expiry_critical_days=14,
    )
    assert result.status is Status.CRITICAL, result.summary


async def test_expired_certificate_is_critical_and_says_when(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server(days_left=-3)
    result = await check_one(manager, f"tls://127.0.0.1:{port}", ca_file=str(tls_ca.ca_file))
    assert result.status is Status.CRITICAL
    assert result.summary == "certificate expired 3 days ago"
    assert result.error is not None and result.error.phase == "tls"
    assert result.metrics["cert_expiry_days"] < -2.9


async def test_unknown_ca_is_critical(
    anyio_backend: str, manager: PluginManager, tls_server: Callable[..., int]
) -> None:
    port = tls_server()
    result = await check_one(manager, f"tls://127.0.0.1:{port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("certificate issued by an unknown CA") or (
        "self-signed" in result.summary
    )


async def test_unverified_tls_still_reports_expiry(
    anyio_backend: str, manager: PluginManager, tls_server: Callable[..., int]
) -> None:
    port = tls_server(days_left=3)
    result = await check_one(manager, f"tls://127.0.0.1:{port}", verify=False)
    assert result.status is Status.CRITICAL
    assert "certificate expires in" in result.summary


async def test_wrong_name_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server()
    result = await check_one(
        manager,
        f"tls://127.0.0.1:{port}",
        ca_file=str(tls_ca.ca_file),
        server_name="mail.example.test",
    )
    assert result.status is Status.CRITICAL
    # The certificate is fetched again to say which names it does cover.
    assert result.summary == (
        "certificate is not valid for mail.example.test (it names localhost, 127.0.0.1)"
    )


async def test_client_certificate_is_presented(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    tls_server: Callable[..., int],
    tmp_path: Path,
) -> None:
    port = tls_server(require_client_cert=True)
    target = f"tls://127.0.0.1:{port}"
    options = {"ca_file": str(tls_ca.ca_file), "expect": "220"}
    without = await check_one(manager, target, **options)
    assert without.status is Status.CRITICAL
    # TLS 1.3 refuses a missing client certificate after the handshake, so it
    # shows on the first read (this server hangs up without sending its alert).
    assert without.summary == "expected '220', but the server closed the connection; got nothing"
    assert without.error is not None and without.error.phase == "first_byte"
    cert = tls_ca.client_cert_file(tmp_path)
    with_cert = await check_one(manager, target, client_cert=str(cert), **options)
    assert with_cert.status is Status.OK, with_cert.summary


async def test_refused_client_certificate_is_critical_without_expect(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    client_cert_server: int,
    tmp_path: Path,
) -> None:
    # TLS 1.3: the client's handshake completes; the server's certificate_required
    # alert comes after it. A check that sends and expects nothing must still see it.
    target = f"tls://127.0.0.1:{client_cert_server}"
    without = await check_one(manager, target, ca_file=str(tls_ca.ca_file), explain=True)
    assert without.status is Status.CRITICAL, without.summary
    assert without.summary == "the server requires a client certificate"
    assert without.error is not None and without.error.phase == "tls"
    assert without.metrics["tls_version"] == "TLSv1.3"
    cert = tls_ca.client_cert_file(tmp_path)
    # This server sends nothing and waits for its client: accepted, it passes.
    with_cert = await check_one(
        manager, target, ca_file=str(tls_ca.ca_file), client_cert=str(cert), explain=True
    )
    assert with_cert.status is Status.OK, with_cert.summary
    assert with_cert.summary.startswith(f"TLSv1.3 to 127.0.0.1:{client_cert_server} in ")
    assert any(e.message.startswith("no alert from the server within") for e in with_cert.trace)


async def test_refusal_after_the_handshake_is_caught_with_quit_alone(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, client_cert_server: int
) -> None:
    result = await check_one(
        manager,
        f"tls://127.0.0.1:{client_cert_server}",
        ca_file=str(tls_ca.ca_file),
        quit=r"QUIT\r\n",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "the server requires a client certificate"


async def test_server_closing_right_after_the_handshake_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    # This server refuses the missing client certificate by hanging up, without an alert.
    port = tls_server(require_client_cert=True)
    result = await check_one(manager, f"tls://127.0.0.1:{port}", ca_file=str(tls_ca.ca_file))
    assert result.status is Status.CRITICAL
    assert result.summary == "the server closed the connection after the TLS handshake"
    assert result.error is not None and result.error.phase == "tls"


async def test_tls_banner_without_expect_passes(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    port = tls_server()
    result = await check_one(
        manager, f"tls://127.0.0.1:{port}", ca_file=str(tls_ca.ca_file), explain=True
    )
    assert result.status is Status.OK, result.summary
    assert any(e.message.endswith("bytes after the handshake") for e in result.trace)


async def test_garbage_instead_of_tls_is_critical(
    anyio_backend: str, manager: PluginManager, not_tls_port: int
) -> None:
    result = await check_one(manager, f"tls://127.0.0.1:{not_tls_port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("not TLS"), result.summary
    assert result.error is not None and result.error.phase == "tls"


async def test_silent_server_times_out_during_tls(
    anyio_backend: str, manager: PluginManager, quiet_port: int
) -> None:
    result = await check_one(manager, f"tls://127.0.0.1:{quiet_port}", seconds=0.3)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during tls"


async def test_reset_during_the_handshake_is_critical(
    anyio_backend: str, manager: PluginManager, resetting_port: int
) -> None:
    result = await check_one(manager, f"tls://127.0.0.1:{resetting_port}")
    assert result.status is Status.CRITICAL
    assert result.summary == "connection reset by peer during the TLS handshake"
    assert result.error is not None and result.error.phase == "tls"


# -- STARTTLS -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_starttls_checks_the_certificate(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    starttls_server: Callable[..., int],
    protocol: str,
) -> None:
    port = starttls_server(protocol, days_left=10)
    result = await check_one(
        manager,
        f"tcp://127.0.0.1:{port}",
        starttls=protocol,
        ca_file=str(tls_ca.ca_file),
        send=r"NOOP\r\n",
        expect="ECHO NOOP",
    )
    assert result.status is Status.WARNING, result.summary
    assert "certificate expires in" in result.summary
    assert {"connect", "starttls", "tls", "first_byte"} <= set(result.phases)
    assert result.metrics["tls_version"] == "TLSv1.3"


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_starttls_refused_is_critical(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    starttls_server: Callable[..., int],
    protocol: str,
) -> None:
    port = starttls_server(protocol, refuse=True)
    result = await check_one(
        manager, f"tcp://127.0.0.1:{port}", starttls=protocol, ca_file=str(tls_ca.ca_file)
    )
    assert result.status is Status.CRITICAL
    assert "refused" in result.summary, result.summary
    assert result.error is not None and result.error.phase == "starttls"


async def test_smtp_without_starttls_is_critical(
    anyio_backend: str, manager: PluginManager, starttls_server: Callable[..., int]
) -> None:
    port = starttls_server("smtp", offer=False)
    result = await check_one(manager, f"tcp://127.0.0.1:{port}", starttls="smtp")
    assert result.status is Status.CRITICAL
    assert result.summary == "SMTP server does not offer STARTTLS"


async def test_data_after_the_starttls_reply_is_refused(
    anyio_backend: str, manager: PluginManager, starttls_server: Callable[..., int]
) -> None:
    port = starttls_server("smtp", inject=True)
    result = await check_one(manager, f"tcp://127.0.0.1:{port}", starttls="smtp")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "smtp server sent data after its STARTTLS reply: '250 injected\\r\\n'"
    )


async def test_starttls_expired_certificate_is_critical(
    anyio_backend: str,
    manager: PluginManager,
    tls_ca: TlsCa,
    starttls_server: Callable[..., int],
) -> None:
    port = starttls_server("smtp", days_left=-1)
    result = await check_one(
        manager, f"tcp://127.0.0.1:{port}", starttls="smtp", ca_file=str(tls_ca.ca_file)
    )
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("certificate expired")


async def test_starttls_against_a_non_smtp_banner(
    anyio_backend: str, manager: PluginManager, quiet_port: int, banner_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{banner_port}", starttls="pop3")
    assert result.status is Status.CRITICAL
    assert result.summary == "POP3 greeting is not +OK: 220 banner.test ESMTP ready"


async def test_starttls_on_a_tls_url_is_unknown(
    anyio_backend: str, manager: PluginManager, banner_port: int
) -> None:
    result = await check_one(manager, f"tls://127.0.0.1:{banner_port}", starttls="smtp")
    assert result.status is Status.UNKNOWN
    assert "starttls applies to tcp:// URLs" in result.summary


# -- options --------------------------------------------------------------------


def test_escapes() -> None:
    assert unescape(r"QUIT\r\n") == b"QUIT\r\n"
    assert unescape(r"\x00\xffA\\\t\e") == b"\x00\xffA\\\t\x1b"
    assert unescape("héllo") == "héllo".encode()
    for bad in ("\\", r"\q", r"\x4", r"\xzz"):
        with pytest.raises(ValueError):
            unescape(bad)


def test_show_bytes_quotes_and_cuts() -> None:
    assert show_bytes(b"220 ok\r\n") == "'220 ok\\r\\n'"
    assert show_bytes(b"a" * 100, limit=4) == "'aaaa'..."


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"send": "\\q"}, "unknown escape"),
        ({"expect": "a", "expect_regex": "b"}, "not both"),
        ({"expect_regex": "("}, "not a regular expression"),
        ({"expect_timeout": 1}, "expect_timeout needs expect"),
        ({"starttls": "ftp"}, "smtp"),
        ({"max_bytes": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_options_are_usage_errors(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        anyprobe.prepare(["tcp://127.0.0.1:1"], options=options, manager=manager)


# -- demo -------------------------------------------------------------------------


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins._demo_tcp import demo_services, tls_demo_services

    for service in (demo_services, tls_demo_services):
        async with service() as checks:
            for demo in checks:
                result = await check_one(manager, demo.url, **demo.options)
                assert result.status is demo.expect, (demo.name, result.summary)
