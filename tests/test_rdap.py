"""The RDAP probe against a real RDAP server on loopback (anyprobe's test HTTP
server, plain and with a trustme certificate), on both backends: domains with
various expiries, 404, 429, a server error, garbage JSON, a huge answer, a
slow answer, redirects, and the bootstrap file (shipped, a file, a URL)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status, TargetError
from anyprobe.testing import HttpReply, HttpRequest, HttpServer
from tests.cli import anyprobe as run_cli
from tests.cli import assert_one_clear_line
from tests.servers.http import server_context

pytestmark = pytest.mark.anyio

RDAP_TYPE = "application/rdap+json"
DAY = 86400.0


def domain(name: str, days_left: float | None, **extra: Any) -> str:
    """An RDAP domain object for ``name`` expiring in ``days_left`` days (no
    expiration event when None)."""
    events: list[dict[str, str]] = [
        {"eventAction": "registration", "eventDate": "2001-02-03T04:05:06Z"}
    ]
    if days_left is not None:
        expires = datetime.fromtimestamp(time.time() + days_left * DAY, UTC)
        events.append(
            {"eventAction": "expiration", "eventDate": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
    document = {
        "objectClassName": "domain",
        "rdapConformance": ["rdap_level_0"],
        "ldhName": name.upper(),
        "status": ["client transfer prohibited"],
        "events": events,
        "entities": [
            {
                "objectClassName": "entity",
                "roles": ["registrar"],
                "vcardArray": [
                    "vcard",
                    [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Registrar, Inc."]],
                ],
            }
        ],
        **extra,
    }
    return json.dumps(document)


def rdap(body: str, status: int = 200, **headers: str) -> HttpReply:
    return HttpReply(status, body, headers=headers, content_type=RDAP_TYPE)


async def slow(request: HttpRequest) -> HttpReply:
    await anyio.sleep(30)
    return rdap(domain("slow.test", 100))


def routes() -> dict[str, HttpReply]:
    """The local RDAP server's answers, their expiry dates counted from now
    (built per test: a long run must not age them)."""
    return {
        "/domain/example.test": rdap(domain("example.test", 400)),
        "/domain/soon.test": rdap(domain("soon.test", 20)),
        "/domain/sooner.test": rdap(domain("sooner.test", 3)),
        "/domain/expired.test": rdap(domain("expired.test", -3)),
        "/domain/noexpiry.test": rdap(domain("noexpiry.test", None)),
        "/domain/redemption.test": rdap(
            domain("redemption.test", 200, status=["redemption period"])
        ),
        "/domain/baddate.test": rdap(
            json.dumps(
                {
                    "objectClassName": "domain",
                    "events": [{"eventAction": "expiration", "eventDate": "next tuesday"}],
                }
            )
        ),
        "/domain/nic.test": rdap(json.dumps({"objectClassName": "entity", "handle": "X"})),
        "/domain/limited.test": rdap('{"errorCode": 429}', 429, **{"Retry-After": "120"}),
        "/domain/broken.test": rdap('{"errorCode": 503, "title": "Backend unavailable"}', 503),
        "/domain/garbage.test": HttpReply(200, "<html>not json</html>", content_type="text/html"),
        "/domain/list.test": rdap("[1, 2, 3]"),
        "/domain/huge.test": rdap(" " * (2 * 1024 * 1024) + "{}"),
        "/domain/slow.test": slow,
        "/domain/moved.test": HttpReply(302, "", headers={"Location": "/domain/example.test"}),
        "/domain/loop.test": HttpReply(302, "", headers={"Location": "/domain/loop.test"}),
        "/domain/away.test": HttpReply(302, "", headers={"Location": "ftp://127.0.0.1/x"}),
        "/domain/badport.test": HttpReply(302, "", headers={"Location": "http://127.0.0.1:99999/"}),
    }


@pytest.fixture
def rdap_server(anyprobe_http_server: Callable[..., HttpServer]) -> HttpServer:
    return anyprobe_http_server(routes())


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


async def check_on(manager: PluginManager, server: HttpServer, name: str, **options: Any) -> Result:
    return await check_one(manager, f"rdap://{name}", rdap_server=server.url("/"), **options)


# -- verdicts ---------------------------------------------------------------------


async def test_a_domain_far_from_expiry_is_ok(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "example.test", explain=True)
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("example.test expires in 400.0 days (")
    assert result.summary.endswith(f"), from 127.0.0.1:{rdap_server.port}")
    assert 399.9 < result.metrics["domain_expiry_days"] < 400.1
    assert abs(result.metrics["domain_expiry_timestamp"] - (time.time() + 400 * DAY)) < 60
    assert result.metrics["http_status"] == 200
    assert result.details["registrar"] == "Example Registrar, Inc."
    assert result.details["events"]["registration"] == "2001-02-03T04:05:06Z"
    assert {"resolve", "connect", "first_byte", "transfer"} <= set(result.phases)
    [request] = rdap_server.requests
    assert request.path == "/domain/example.test"
    assert request.header("accept").startswith(RDAP_TYPE)
    assert any("event expiration:" in line.message for line in result.trace)


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("soon.test", Status.WARNING, "less than domain_expiry_warning_days (30)"),
        ("sooner.test", Status.CRITICAL, "less than domain_expiry_critical_days (7)"),
    ],
)
async def test_days_left_under_a_threshold(
    anyio_backend: str,
    manager: PluginManager,
    rdap_server: HttpServer,
    name: str,
    status: Status,
    says: str,
) -> None:
    result = await check_on(manager, rdap_server, name)
    assert result.status is status, result.summary
    assert result.summary.endswith(says)


async def test_thresholds_are_options(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(
        manager,
        rdap_server,
        "soon.test",
        domain_expiry_warning_days=10,
        domain_expiry_critical_days=5,
    )
    assert result.status is Status.OK, result.summary
    result = await check_on(manager, rdap_server, "example.test", domain_expiry_warning_days=500)
    assert result.status is Status.WARNING, result.summary
    assert result.summary.endswith("less than domain_expiry_warning_days (500)")


async def test_an_expired_domain_is_critical(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "expired.test")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("expired.test expired 3 days ago (")
    assert result.metrics["domain_expiry_days"] < 0


async def test_a_domain_in_redemption_is_critical(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "redemption.test")
    assert result.status is Status.CRITICAL
    assert result.summary.endswith("; status redemption period")


async def test_not_found_is_not_registered(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "missing.test")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"missing.test is not registered (127.0.0.1:{rdap_server.port} answered HTTP 404)"
    )


@pytest.mark.parametrize(
    ("name", "summary"),
    [
        ("noexpiry.test", "no expiration event in {at}'s answer for noexpiry.test"),
        ("limited.test", "rate limited by {at} (HTTP 429); Retry-After: 120"),
        ("broken.test", "{at} answered HTTP 503 Service Unavailable: 'Backend unavailable'"),
        ("garbage.test", "{at} answered with something else than RDAP JSON (not JSON: "),
        ("list.test", "{at} answered with something else than RDAP JSON (a JSON list, not "),
        ("nic.test", "{at} answered with an RDAP 'entity' object, not a domain"),
        ("baddate.test", "{at} gives baddate.test an expiration date that is not a date: "),
        ("huge.test", "the answer from {at} is larger than max_body_bytes (1048576 bytes)"),
        ("loop.test", "a redirect loop from {at} (last to http://{at}/domain/loop.test)"),
        ("away.test", "{at} redirects to ftp://127.0.0.1/x, not an http(s) URL with a host"),
        ("badport.test", "{at} redirects to http://127.0.0.1:99999/, not an http(s) URL"),
    ],
)
async def test_answers_that_tell_nothing_are_unknown(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer, name: str, summary: str
) -> None:
    result = await check_on(manager, rdap_server, name)
    assert result.status is Status.UNKNOWN, result.summary
    assert result.summary.startswith(summary.format(at=f"127.0.0.1:{rdap_server.port}"))


async def test_a_redirect_is_followed(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "moved.test")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("moved.test expires in 400.0 days")
    assert result.details["rdap_url"] == rdap_server.url("/domain/example.test")
    unfollowed = await check_on(manager, rdap_server, "moved.test", follow_redirects=False)
    assert unfollowed.status is Status.UNKNOWN
    assert unfollowed.summary == f"127.0.0.1:{rdap_server.port} answered HTTP 302 Found"


async def test_a_slow_server_times_out(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_one(
        manager, "rdap://slow.test", seconds=0.5, rdap_server=rdap_server.url("/")
    )
    assert result.status is Status.CRITICAL
    assert "timed out" in result.summary or "timeout" in result.summary, result.summary
    assert result.error is not None and result.error.phase == "first_byte"


async def test_a_closed_port_is_critical(anyio_backend: str, manager: PluginManager) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await check_one(
        manager, "rdap://example.test", rdap_server=f"http://127.0.0.1:{port}/"
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"


# -- https --------------------------------------------------------------------------


async def test_https_with_a_trusted_certificate(
    anyio_backend: str,
    manager: PluginManager,
    anyprobe_http_server: Callable[..., HttpServer],
    http_ca: trustme.CA,
    http_ca_file: str,
) -> None:
    server = anyprobe_http_server(routes(), ssl_context=server_context(http_ca, "127.0.0.1"))
    result = await check_on(manager, server, "example.test", ca_file=http_ca_file)
    assert result.status is Status.OK, result.summary
    assert "tls" in result.phases
    untrusted = await check_on(manager, server, "example.test")
    assert untrusted.status is Status.CRITICAL
    assert "unknown CA" in untrusted.summary, untrusted.summary


# -- the bootstrap file -----------------------------------------------------------


def bootstrap(path: Path, *services: tuple[list[str], list[str]]) -> str:
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "publication": "2026-11-01T00:00:00Z",
                "services": [list(s) for s in services],
            }
        )
    )
    return str(path)


async def test_the_server_comes_from_the_bootstrap_file(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer, tmp_path: Path
) -> None:
    path = bootstrap(
        tmp_path / "dns.json",
        (["other"], ["http://127.0.0.9:1/"]),
        (["test"], [rdap_server.url("/")]),
    )
    result = await check_one(manager, "rdap://www.example.test", bootstrap_file=path)
    # www.example.test is looked up as it is: the registry decides.
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("www.example.test is not registered")
    result = await check_one(manager, "rdap://example.test", bootstrap_file=path, explain=True)
    assert result.status is Status.OK, result.summary
    assert any(
        line.message == f"RDAP server for .test: {rdap_server.url('/')} ({path})"
        for line in result.trace
    )


async def test_the_longest_suffix_wins(
    anyio_backend: str,
    manager: PluginManager,
    rdap_server: HttpServer,
    anyprobe_http_server: Callable[..., HttpServer],
    tmp_path: Path,
) -> None:
    other = anyprobe_http_server({"/rdap/domain/example.co.test": rdap(domain("x", 60))})
    path = bootstrap(
        tmp_path / "dns.json",
        (["test"], [rdap_server.url("/")]),
        (["co.test"], [other.url("/rdap")]),  # no trailing slash: one is added
    )
    result = await check_one(manager, "rdap://example.co.test", bootstrap_file=path)
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith(f"from 127.0.0.1:{other.port}")


async def test_a_tld_without_rdap_server_is_unknown(
    anyio_backend: str, manager: PluginManager, tmp_path: Path
) -> None:
    result = await check_one(manager, "rdap://example.de")
    assert result.status is Status.UNKNOWN
    assert result.summary == (
        "no RDAP server for .de in the bootstrap file shipped with anyprobe "
        "(published 2026-11-01T00:00:00Z): give one in rdap_server"
    )


async def test_the_bootstrap_file_can_be_fetched_once_per_run(
    anyio_backend: str,
    manager: PluginManager,
    rdap_server: HttpServer,
    anyprobe_http_server: Callable[..., HttpServer],
) -> None:
    document = {"version": "1.0", "services": [[["test"], [rdap_server.url("/")]]]}
    iana = anyprobe_http_server(
        {"/rdap/dns.json": HttpReply(200, json.dumps(document), content_type="application/json")}
    )
    targets = ["rdap://example.test", "rdap://soon.test", "rdap://missing.test"]
    results = await anyprobe.check(
        targets, options={"bootstrap_url": iana.url("/rdap/dns.json")}, manager=manager
    )
    statuses = {r.target: r.status for r in results}
    assert statuses == {
        "rdap://example.test": Status.OK,
        "rdap://soon.test": Status.WARNING,
        "rdap://missing.test": Status.CRITICAL,
    }
    assert len(iana.requests) == 1


async def test_a_bootstrap_url_that_fails_is_unknown(
    anyio_backend: str, manager: PluginManager, anyprobe_http_server: Callable[..., HttpServer]
) -> None:
    iana = anyprobe_http_server({"/dns.json": HttpReply(200, '{"services": 3}')})
    results = await anyprobe.check(
        ["rdap://a.test", "rdap://b.test"],
        options={"bootstrap_url": iana.url("/dns.json")},
        manager=manager,
    )
    for result in results:
        assert result.status is Status.UNKNOWN
        assert result.summary == (
            f"cannot fetch the bootstrap file {iana.url('/dns.json')}: "
            'not an RDAP bootstrap file (no "services" list)'
        )
    assert len(iana.requests) == 1


def test_the_shipped_bootstrap_file_knows_the_common_tlds() -> None:
    from anyprobe.plugins._rdap_bootstrap import read_shipped

    shipped = read_shipped()
    assert shipped.lookup("example.com") == ("com", "https://rdap.verisign.com/com/v1/")
    assert shipped.lookup("www.example.org") is not None
    assert shipped.lookup("example.de") is None


# -- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("rdap://example.com:43", "a port is not taken by rdap:// URLs"),
        ("rdap://192.0.2.1", "an IP address is not a domain name"),
        ("rdap://localhost", "localhost is not a registered domain name"),
        ("rdap://example.com/path", "a path (/path) is not taken"),
        ("rdap://user@example.com", "a user name is not taken"),
    ],
)
def test_bad_targets_are_refused(manager: PluginManager, url: str, says: str) -> None:
    with pytest.raises(TargetError, match=f"^{url}: .*{says.replace('(', '.').replace(')', '.')}"):
        anyprobe.prepare([url], manager=manager)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"rdap_server": "ftp://x/"}, "rdap_server must be an http:// or https:// URL"),
        ({"bootstrap_url": "example.com"}, "bootstrap_url must be an http:// or https:// URL"),
        (
            {"domain_expiry_warning_days": 5, "domain_expiry_critical_days": 10},
            "domain_expiry_critical_days must not be greater than domain_expiry_warning_days",
        ),
        ({"domain_expiry_warning_days": -1}, "greater than or equal to 0"),
        ({"max_body_bytes": 10}, "greater than or equal to 1024"),
        ({"bootstrap_file": "/nonexistent/dns.json"}, "cannot read /nonexistent/dns.json"),
    ],
)
def test_bad_options_are_refused(
    manager: PluginManager, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(OptionsError, match=says.replace("(", ".").replace(")", ".")):
        anyprobe.prepare(["rdap://example.com"], options=options, manager=manager)


def test_a_bad_bootstrap_file_is_one_line_exit_3(tmp_path: Path) -> None:
    (tmp_path / "dns.json").write_text('{"services": [["com", "https://x/"]]}')
    proc = run_cli(
        "check", "rdap://example.com", "--set", f"bootstrap_file={tmp_path / 'dns.json'}"
    )
    assert_one_clear_line(
        proc, "bootstrap_file", "services[0] is not [[labels...], [base URLs...]]"
    )
    proc = run_cli(
        "check",
        "rdap://example.com",
        "--set",
        "bootstrap_url=https://x/",
        "--set",
        f"bootstrap_file={tmp_path / 'dns.json'}",
    )
    assert_one_clear_line(proc, "give bootstrap_file or bootstrap_url, not both")
    (tmp_path / "garbage.json").write_text("{")
    proc = run_cli(
        "check", "rdap://example.com", "--set", f"bootstrap_file={tmp_path / 'garbage.json'}"
    )
    assert_one_clear_line(proc, "bootstrap_file", "not JSON")


def test_a_bad_target_is_one_line_exit_3() -> None:
    assert_one_clear_line(run_cli("check", "rdap://example.com:43"), "rdap://example.com:43")


# -- Prometheus -------------------------------------------------------------------


async def test_the_expiry_is_a_prometheus_metric(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    from anyprobe.plugins.prometheus import exposition

    result = await check_on(manager, rdap_server, "example.test")
    text = exposition([result])
    [line] = [
        row for row in text.splitlines() if row.startswith("probe_domain_expiry_timestamp_seconds{")
    ]
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(time.time() + 400 * DAY, abs=60)


async def test_the_address_policy_applies_to_the_rdap_server_and_redirects(
    anyio_backend: str,
    manager: PluginManager,
    rdap_server: HttpServer,
    anyprobe_http_server: Callable[..., HttpServer],
) -> None:
    from anyprobe.net import address_policy

    def policy(host: str, addresses: Sequence[str]) -> str | None:
        return None if "127.0.0.2" not in [host, *addresses] else f"{host} is not allowed"

    other = anyprobe_http_server(routes(), host="127.0.0.2")
    away = anyprobe_http_server(
        {"/domain/example.test": HttpReply(302, "", headers={"Location": other.url("/x")})}
    )
    with address_policy(policy):
        refused = await check_on(manager, other, "example.test")
        redirected = await check_on(manager, away, "example.test")
        allowed = await check_on(manager, rdap_server, "example.test")
    assert refused.status is Status.CRITICAL
    assert refused.summary == "127.0.0.2 is not allowed"
    assert redirected.status is Status.CRITICAL
    assert redirected.summary == "127.0.0.2 is not allowed"
    assert other.requests == []
    assert allowed.status is Status.OK, allowed.summary


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins._demo_rdap import demo_services

    async with demo_services() as checks:
        assert len(checks) == 2
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)


async def test_an_internationalised_name_is_asked_in_a_labels(
    anyio_backend: str, manager: PluginManager, rdap_server: HttpServer
) -> None:
    result = await check_on(manager, rdap_server, "bücher.test")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("xn--bcher-kva.test is not registered")
    assert [r.path for r in rdap_server.requests] == ["/domain/xn--bcher-kva.test"]
