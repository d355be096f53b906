"""The HTTP(S) probe against real loopback servers, on asyncio and trio."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyprobe
from anyprobe import PluginManager, Result, Status
from anyprobe._http_server import serve_http
from anyprobe.plugins.http import HttpOptions
from anyprobe.plugins.jsonl import JsonlReporter
from anyprobe.plugins.table import TableOptions, TableReporter
from tests.servers.http import (
    TestApp,
    cert_files,
    self_signed,
    serve_h2,
    serve_proxy,
    serve_raw,
    server_context,
    threaded_tls_server,
)

# Every test runs with each HTTP/1.1 parser (h11, httptools) on each backend.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("http_parser")]


async def probe(
    url: str,
    manager: PluginManager,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - the check's own timeout, given to anyprobe
    explain: bool = False,
    **options: Any,
) -> Result:
    results = await anyprobe.check(
        [url], options=options, manager=manager, timeout=timeout, explain=explain
    )
    assert len(results) == 1
    return results[0]


# -- plain HTTP ------------------------------------------------------------------------


async def test_ok_endpoint_reports_status_phases_and_metrics(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/ok", manager)
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("HTTP 200 in ")
    assert set(result.phases) == {"resolve", "connect", "first_byte", "transfer"}
    assert result.metrics["http_status"] == 200
    assert result.metrics["http_version"] == "1.1"
    assert result.metrics["body_bytes"] == len(b"hello from anyprobe tests\n")
    assert result.metrics["redirects"] == 0


async def test_service_unavailable_is_critical(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/status/503", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "HTTP 503: expected status 2xx"
    assert result.metrics["http_status"] == 503


async def test_expect_status_accepts_codes_and_classes(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        url = f"http://127.0.0.1:{port}/status/503"
        by_code = await probe(url, manager, expect_status=[200, 503])
        by_class = await probe(url, manager, expect_status="5xx")
        wrong = await probe(url, manager, expect_status=["2xx", 404])
    assert by_code.status is Status.OK
    assert by_class.status is Status.OK
    assert wrong.status is Status.CRITICAL
    assert wrong.summary == "HTTP 503: expected status 2xx, 404"


async def test_explain_trace_shows_addresses_request_and_response(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/ok", manager, explain=True)
    lines = [event.message for event in result.trace]
    assert "resolved 127.0.0.1 to 127.0.0.1" in lines
    assert f"connected to 127.0.0.1 port {port}" in lines
    assert "> GET /ok" in lines
    assert f"> Host: 127.0.0.1:{port}" in lines
    assert "< HTTP/1.1 200 OK" in lines


async def test_warning_after_makes_a_slow_answer_a_warning(manager: PluginManager) -> None:
    async def slow(request: Any, stream: Any) -> None:
        await anyio.sleep(0.3)
        await TestApp()(request, stream)

    async with serve_http(slow) as port:
        result = await probe(f"http://127.0.0.1:{port}/ok", manager, warning_after=0.1)
    assert result.status is Status.WARNING
    assert "over warning_after 0.1 s" in result.summary


# -- redirects -------------------------------------------------------------------------


async def test_redirect_chain_is_followed_and_counted(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/redirect/3", manager)
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith("after 3 redirects")
    assert result.metrics["redirects"] == 3
    assert [r["location"] for r in result.details["redirects"]][-1].endswith("/redirect/0")


async def test_too_many_redirects_is_critical(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/redirect/3", manager, max_redirects=2)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("more than 2 redirects")


async def test_redirects_not_followed_when_turned_off(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        url = f"http://127.0.0.1:{port}/redirect/1"
        off = await probe(url, manager, follow_redirects=False)
        expected = await probe(url, manager, follow_redirects=False, expect_status="3xx")
    assert off.status is Status.CRITICAL
    assert off.summary == "HTTP 302: expected status 2xx"
    assert expected.status is Status.OK


async def test_redirect_loop_is_critical_and_named(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        base = f"http://127.0.0.1:{port}"
        result = await probe(f"{base}/loop/a", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == f"redirect loop: {base}/loop/a -> {base}/loop/b -> {base}/loop/a"


async def test_see_other_after_post_is_fetched_with_get(manager: PluginManager) -> None:
    app = TestApp()
    async with serve_http(app) as port:
        result = await probe(
            f"http://127.0.0.1:{port}/post-redirect",
            manager,
            method="POST",
            json_body={"ping": 1},
            body_contains="GET",
        )
    assert result.status is Status.OK, result.summary
    assert [r.method for r in app.requests] == ["POST", "GET"]
    assert json.loads(app.requests[0].body) == {"ping": 1}
    assert app.requests[0].headers["content-type"] == "application/json"


# -- bodies, assertions --------------------------------------------------------------------


async def test_huge_body_is_read_only_up_to_the_cap(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(
            f"http://127.0.0.1:{port}/big", manager, max_body_bytes=1024 * 1024, timeout=10
        )
    assert result.status is Status.CRITICAL
    assert result.summary == "HTTP 200: body larger than max_body_bytes (1048576 bytes)"
    assert result.metrics["body_bytes"] == 1024 * 1024


async def test_body_and_header_assertions(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        ok = f"http://127.0.0.1:{port}/ok"
        headers = f"http://127.0.0.1:{port}/headers"
        passing = await probe(
            ok, manager, body_contains=["hello"], body_matches=r"anyprobe\s+tests"
        )
        missing = await probe(ok, manager, body_contains="goodbye")
        unmatched = await probe(ok, manager, body_matches="^goodbye")
        forbidden = await probe(ok, manager, body_not_matches="h[e]llo")
        header_ok = await probe(headers, manager, expect_headers={"X-Build": "^42$"})
        header_bad = await probe(headers, manager, expect_headers={"Content-Type": "json"})
        header_missing = await probe(headers, manager, expect_headers={"X-Missing": "."})
    assert passing.status is Status.OK, passing.summary
    assert missing.summary == "HTTP 200: body does not contain 'goodbye'"
    assert unmatched.summary == "HTTP 200: body does not match '^goodbye'"
    assert forbidden.summary == "HTTP 200: body matches 'h[e]llo' ('hello')"
    assert header_ok.status is Status.OK, header_ok.summary
    assert header_bad.summary == (
        "HTTP 200: header content-type is 'text/plain', expected to match 'json'"
    )
    assert header_missing.summary == "HTTP 200: header x-missing missing"
    for result in (missing, unmatched, forbidden, header_bad, header_missing):
        assert result.status is Status.CRITICAL


async def test_json_assertions(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        url = f"http://127.0.0.1:{port}/json"
        passing = await probe(
            url,
            manager,
            json_assertions=["status == 'UP'", "checks[0].ok", "length(checks) == `1`"],
        )
        failing = await probe(url, manager, json_assertions=["status == 'DOWN'"])
        not_json = await probe(
            f"http://127.0.0.1:{port}/ok", manager, json_assertions=["status == 'UP'"]
        )
    assert passing.status is Status.OK, passing.summary
    assert failing.status is Status.CRITICAL
    assert failing.summary == (
        "HTTP 200: JSON assertion \"status == 'DOWN'\" is not true (status is '\"UP\"')"
    )
    assert not_json.status is Status.CRITICAL
    assert not_json.summary.startswith("HTTP 200: body is not JSON")


def test_bad_json_assertion_or_regex_is_an_options_error(manager: PluginManager) -> None:
    with pytest.raises(anyprobe.OptionsError, match="bad JSON assertion"):
        anyprobe.prepare(
            ["http://127.0.0.1:1/"], manager=manager, options={"json_assertions": ["status =="]}
        )
    with pytest.raises(anyprobe.OptionsError, match="not a regular expression"):
        anyprobe.prepare(["http://127.0.0.1:1/"], manager=manager, options={"body_matches": "("})
    with pytest.raises(anyprobe.OptionsError, match="not a status code"):
        anyprobe.prepare(["http://127.0.0.1:1/"], manager=manager, options={"expect_status": 99})


# -- faults ----------------------------------------------------------------------------


async def test_refused_connection_is_critical(manager: PluginManager, closed_port: int) -> None:
    result = await probe(f"http://127.0.0.1:{closed_port}/", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_port_that_never_answers_times_out_in_connect(
    manager: PluginManager, blackhole_port: int
) -> None:
    result = await probe(f"http://127.0.0.1:{blackhole_port}/", manager, timeout=0.5)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.5 s during connect"


async def test_server_that_never_responds_times_out_waiting_for_first_byte(
    manager: PluginManager,
) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/silent", manager, timeout=0.5)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.5 s during first_byte"


async def test_trickling_server_times_out(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/trickle", manager, timeout=1.5)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 1.5 s during first_byte"


async def test_reset_connection_is_critical(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/reset", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "connection reset by peer"
    assert result.error is not None and result.error.phase == "first_byte"


async def test_closed_without_response_is_critical(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/close", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "the server closed the connection without a response"


async def test_garbage_instead_of_http_is_critical(manager: PluginManager) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://127.0.0.1:{port}/garbage", manager)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("invalid HTTP response")


async def test_garbage_instead_of_tls_is_critical(manager: PluginManager) -> None:
    async def garbage(stream: Any) -> None:
        await stream.receive()
        await stream.send(b"SSH-2.0-OpenSSH_9.6 this is not TLS\r\n" * 4)

    async with serve_raw(garbage) as port:
        result = await probe(f"https://127.0.0.1:{port}/", manager)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("not TLS"), result.summary
    assert result.error is not None and result.error.phase == "tls"


async def test_plain_http_server_on_an_https_url_is_not_tls(manager: PluginManager) -> None:
    async def bad_request(stream: Any) -> None:
        # What nginx answers on its plain port to a TLS ClientHello.
        await stream.receive()
        await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    async with serve_raw(bad_request) as port:
        result = await probe(f"https://127.0.0.1:{port}/", manager)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("not TLS"), result.summary


# -- TLS --------------------------------------------------------------------------------


async def test_valid_certificate_is_inspected(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    context = server_context(http_ca, "localhost", days_left=90)
    async with serve_http(TestApp(), ssl_context=context) as port:
        result = await probe(f"https://localhost:{port}/ok", manager, ca_file=http_ca_file)
    assert result.status is Status.OK, result.summary
    assert set(result.phases) == {"resolve", "connect", "tls", "first_byte", "transfer"}
    assert result.metrics["tls_version"] == "TLSv1.3"
    assert 89 < result.metrics["cert_expiry_days"] <= 90
    leaf = result.details["tls"]["certificates"][0]
    assert leaf["sans"] == ["localhost"]
    assert leaf["issuer"].startswith("OU=Testing CA")
    assert leaf["key_type"].startswith("EC ")
    assert result.details["tls"]["cipher"]


async def test_certificate_expiring_in_10_days_is_a_warning(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    context = server_context(http_ca, "localhost", days_left=10)
    async with serve_http(TestApp(), ssl_context=context) as port:
        url = f"https://localhost:{port}/ok"
        default = await probe(url, manager, ca_file=http_ca_file)
        relaxed = await probe(
            url,
            manager,
            ca_file=http_ca_file,
            cert_expiry_warning_days=5,
            cert_expiry_critical_days=2,
        )
        strict = await probe(url, manager, ca_file=http_ca_file, cert_expiry_critical_days=14)
    assert default.status is Status.WARNING
    assert default.summary.endswith("; certificate expires in 10.0 days")
    assert relaxed.status is Status.OK
    assert strict.status is Status.CRITICAL


async def test_expired_certificate_is_critical_and_says_when(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    context = server_context(http_ca, "localhost", days_left=-3)
    async with serve_http(TestApp(), ssl_context=context) as port:
        result = await probe(f"https://localhost:{port}/ok", manager, ca_file=http_ca_file)
    assert result.status is Status.CRITICAL
    assert result.summary == "certificate expired 3 days ago"
    assert result.error is not None and result.error.phase == "tls"
    assert result.error.type == "SSLCertVerificationError"
    assert result.metrics["cert_expiry_days"] == pytest.approx(-3, abs=0.01)


async def test_wrong_hostname_is_critical(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    context = server_context(http_ca, "other.example")
    async with serve_http(TestApp(), ssl_context=context) as port:
        result = await probe(f"https://localhost:{port}/ok", manager, ca_file=http_ca_file)
        by_name = await probe(
            f"https://127.0.0.1:{port}/ok",
            manager,
            ca_file=http_ca_file,
            server_name="other.example",
            explain=True,
        )
    assert result.status is Status.CRITICAL
    assert result.summary == "certificate is not valid for localhost (it names other.example)"
    assert by_name.status is Status.OK, by_name.summary
    assert "> Host: other.example:" + str(port) in [e.message for e in by_name.trace]


async def test_self_signed_certificate_is_critical(manager: PluginManager, tmp_path: Path) -> None:
    async with serve_http(TestApp(), ssl_context=self_signed(tmp_path)) as port:
        url = f"https://localhost:{port}/ok"
        result = await probe(url, manager)
        unverified = await probe(url, manager, verify=False)
    assert result.status is Status.CRITICAL
    assert result.summary == "self-signed certificate (to trust it, give it in ca_file)"
    assert unverified.status is Status.OK, unverified.summary
    assert unverified.summary.endswith("; certificate NOT verified (verify = false)")
    assert unverified.metrics["cert_verified"] is False
    assert 89 < unverified.metrics["cert_expiry_days"] <= 90


async def test_verify_false_on_plain_http_says_nothing_of_certificates(
    manager: PluginManager,
) -> None:
    async with serve_http(TestApp()) as port:
        result = await probe(f"http://localhost:{port}/ok", manager, verify=False)
    assert result.status is Status.OK, result.summary
    assert "verified" not in result.summary
    assert "cert_verified" not in result.metrics


async def test_unknown_ca_is_critical(manager: PluginManager, http_ca: trustme.CA) -> None:
    context = server_context(http_ca, "localhost")
    async with serve_http(TestApp(), ssl_context=context) as port:
        result = await probe(f"https://localhost:{port}/ok", manager)
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "certificate issued by an unknown CA (to trust that CA, give it in ca_file)"
    )


async def test_client_certificate_required(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str, http_client_cert: str
) -> None:
    context = server_context(http_ca, "localhost", require_client_cert=True)
    with threaded_tls_server(context) as port:
        url = f"https://localhost:{port}/ok"
        without = await probe(url, manager, ca_file=http_ca_file)
        with_cert = await probe(url, manager, ca_file=http_ca_file, client_cert=http_client_cert)
    assert without.status is Status.CRITICAL
    assert without.summary == "the server requires a client certificate"
    assert with_cert.status is Status.OK, with_cert.summary
    assert with_cert.metrics["client_cert_expiry_days"] > 300


def test_missing_ca_file_is_an_options_error(manager: PluginManager, tmp_path: Path) -> None:
    with pytest.raises(anyprobe.OptionsError, match="ca_file"):
        anyprobe.prepare(
            ["https://127.0.0.1:1/"],
            manager=manager,
            options={"ca_file": str(tmp_path / "missing.pem")},
        )


async def test_http2_is_negotiated_when_asked(
    manager: PluginManager,
    http_ca: trustme.CA,
    http_ca_file: str,
    tmp_path: Path,
    anyio_backend: str,
) -> None:
    certfile, keyfile = cert_files(http_ca, tmp_path)
    async with serve_h2(certfile, keyfile, anyio_backend) as port:
        url = f"https://localhost:{port}/"
        h2 = await probe(url, manager, ca_file=http_ca_file, http2=True, body_contains="HTTP/2")
        h1 = await probe(url, manager, ca_file=http_ca_file, body_contains="HTTP/1.1")
    assert h2.status is Status.OK, h2.summary
    assert h2.metrics["http_version"] == "2"
    assert h2.details["tls"]["alpn"] == "h2"
    assert {"tls", "first_byte", "transfer"} <= set(h2.phases)
    assert h1.status is Status.OK, h1.summary
    assert h1.metrics["http_version"] == "1.1"


async def test_requests_go_through_a_proxy(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    context = server_context(http_ca, "localhost")
    async with (
        serve_http(TestApp()) as plain_port,
        serve_http(TestApp(), ssl_context=context) as tls_port,
        serve_proxy() as (proxy_port, seen),
    ):
        proxy = f"http://127.0.0.1:{proxy_port}"
        plain = await probe(f"http://127.0.0.1:{plain_port}/ok", manager, proxy=proxy)
        tunnelled = await probe(
            f"https://localhost:{tls_port}/ok", manager, proxy=proxy, ca_file=http_ca_file
        )
    assert plain.status is Status.OK, plain.summary
    assert tunnelled.status is Status.OK, tunnelled.summary
    assert seen == [
        f"GET http://127.0.0.1:{plain_port}/ok HTTP/1.1",
        f"CONNECT localhost:{tls_port} HTTP/1.1",
    ]


# -- secrets ---------------------------------------------------------------------------------

SECRETS = {
    "API_PASSWORD": "pa55-from-env-Kq9",
    "API_TOKEN": "tok-from-env-Zr7",
    "API_KEY": "key-from-env-Wm3",
}
URL_PASSWORD = "url-pass-Xy4"


async def test_basic_and_bearer_auth_are_sent(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    import base64

    basic = "Basic " + base64.b64encode(f"ops:{SECRETS['API_PASSWORD']}".encode()).decode()
    async with serve_http(TestApp()) as port:
        url = f"http://127.0.0.1:{port}/auth"
        with_basic = await probe(
            url,
            manager,
            username="ops",
            password_env="API_PASSWORD",
            headers={"X-Expect-Authorization": basic},
        )
        with_bearer = await probe(
            url,
            manager,
            bearer_token_env="API_TOKEN",
            headers={"X-Expect-Authorization": f"Bearer {SECRETS['API_TOKEN']}"},
        )
        wrong = await probe(
            url, manager, bearer_token="nope", headers={"X-Expect-Authorization": "x"}
        )
    assert with_basic.status is Status.OK, with_basic.summary
    assert with_bearer.status is Status.OK, with_bearer.summary
    assert wrong.summary == "HTTP 401: expected status 2xx"
    # An unset variable is refused with the options, before anything is sent.
    with pytest.raises(anyprobe.OptionsError) as info:
        await probe(url, manager, bearer_token_env="ANYPROBE_TEST_UNSET_VARIABLE")
    assert str(info.value) == (
        f"options: check {url}: field 'bearer_token_env': "
        "environment variable ANYPROBE_TEST_UNSET_VARIABLE is not set"
    )


async def test_secrets_never_reach_results_traces_or_reports(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    jsonl, table = tmp_path / "results.jsonl", tmp_path / "table.txt"
    reporters = [
        ("jsonl", JsonlReporter(anyprobe.ReporterOptions(path=str(jsonl)))),
        ("table", TableReporter(TableOptions(path=str(table)))),
    ]
    async with serve_http(TestApp()) as port:
        base = f"http://ops:{URL_PASSWORD}@127.0.0.1:{port}"
        results = await anyprobe.check(
            [f"{base}/echo", f"{base}/redirect/1", f"{base}/loop/a"],
            manager=manager,
            explain=True,
            reporters=reporters,
            options={"header_env": {"X-Api-Key": "API_KEY"}},
        )
        token_results = await anyprobe.check(
            [f"http://127.0.0.1:{port}/echo"],
            manager=manager,
            explain=True,
            options={"bearer_token_env": "API_TOKEN"},
        )
        password_results = await anyprobe.check(
            [f"http://127.0.0.1:{port}/echo"],
            manager=manager,
            explain=True,
            options={"username": "ops", "password_env": "API_PASSWORD"},
        )
    everything = [*results, *token_results, *password_results]
    assert len(everything) == 5
    texts = [json.dumps(r.as_dict(), default=str) for r in everything]
    texts += [repr(r) for r in everything]
    texts += [jsonl.read_text(), table.read_text()]
    assert "Authorization: ***" in table.read_text()
    assert "X-Api-Key: ***" in table.read_text()
    for text in texts:
        for secret in [*SECRETS.values(), URL_PASSWORD]:
            assert secret not in text
    assert f"ops:***@127.0.0.1:{port}" in jsonl.read_text()


# -- demo -------------------------------------------------------------------------------


async def test_demo_rows_get_their_verdicts(manager: PluginManager) -> None:
    from anyprobe._demo import compare, start_demo_services
    from anyprobe.plugins import http

    only_http = PluginManager()
    only_http.register(http)
    async with AsyncExitStack() as stack:
        targets, expected = await start_demo_services(only_http, stack)
        results = await anyprobe.check(targets, manager=only_http)
    assert len(expected) == 3
    assert {s for s in expected.values()} == {Status.OK, Status.WARNING, Status.CRITICAL}
    assert compare(results, expected) == []


# -- options from anywhere --------------------------------------------------------------

_FIELDS = [*sorted(HttpOptions.model_fields), "expect_stauts", "timeout_ms"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=700),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(min_value=0, max_value=700), st.text(max_size=6)), max_size=3),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(options=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=4))
def test_any_option_values_give_a_result_or_one_clear_error(
    options: dict[str, Any], anyio_backend: str, manager: PluginManager
) -> None:
    async def main() -> None:
        async with serve_http(TestApp()) as port:
            url = f"http://127.0.0.1:{port}/json"
            try:
                results = await anyprobe.check([url], manager=manager, options=options, timeout=2)
            except anyprobe.OptionsError as exc:
                assert "\n" not in str(exc)
                assert str(exc)
                return
        assert len(results) == 1
        result = results[0]
        assert not result.summary.startswith("probe http raised"), result.summary

    anyio.run(main, backend=anyio_backend)
