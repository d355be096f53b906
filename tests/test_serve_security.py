"""``anyprobe serve`` safe to expose: the allow-list holds at every connect and
every redirect hop, secrets never reach a report, a client that goes away frees
its probe's slot, the listener speaks TLS and wants credentials, and a second
SIGTERM ends the server cleanly. Real sockets throughout, on both backends."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import anyprobe
from anyprobe import PluginManager
from anyprobe._serve import probe_timeout
from anyprobe._serve_security import AllowList
from tests.cli import anyprobe as run_anyprobe
from tests.cli import assert_one_clear_line
from tests.servers.reflect import SESSION_COOKIE, ReflectServer, start_reflect_server
from tests.servers.serve import BACKEND_SERVERS, SilentTarget, WebTarget
from tests.test_serve import get, running, samples

#: Longest a server process may take to start or to stop (a bound, not a timing).
PROCESS_LIMIT = 60.0


# -- the allow-list: control characters, resolved addresses, redirects --------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "params",
    [
        {"target": "tcp://127.0.0.1\x00.example.com:{port}", "module": "tcp_connect"},
        {"target": "http://127.0.0.1\x00.example.com:{port}/", "hostname": "www.example.com"},
        {"target": "http://www.example.com:{port}/", "hostname": "www.example.com\x00"},
        {"target": "http://www.example.com:{port}/", "hostname": "127.0.0.1\r\nX: y"},
    ],
    ids=["tcp-nul", "http-nul-with-hostname", "nul-in-hostname", "crlf-in-hostname"],
)
async def test_control_characters_in_a_host_are_refused(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path, params: dict[str, str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[serve]\nallow_targets = ["*.example.com"]\n')
    query = {k: v.format(port=web_target.port) for k, v in params.items()}
    async with running(manager, config) as url:
        response = await get(f"{url}/probe", params=query)
    assert response.status_code == 400, response.text
    assert "Bad " in response.text
    assert web_target.paths == []


def test_a_module_with_control_characters_in_a_host_option_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.m]\nprobe = "http"\nserver_name = "a\\u0000.example.com"\n')
    proc = run_anyprobe("serve", str(config), "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, "module m", "control characters", "server_name")


@pytest.mark.usefixtures("asgi_server")
@pytest.mark.anyio
async def test_a_name_resolving_outside_the_networks_is_refused_at_connect(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    # localhost resolves to loopback, outside 10.0.0.0/8: checked on the
    # addresses the probe would connect to, not on the name.
    config = tmp_path / "serve.toml"
    config.write_text('[serve]\nallow_targets = ["10.0.0.0/8"]\n')
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe",
            params={"target": f"http://localhost:{web_target.port}/", "debug": "true"},
        )
    assert response.status_code == 200
    assert re.search(r"localhost resolves to \S+, which is not in allow_targets", response.text)
    assert "probe_success 0" in response.text
    assert web_target.paths == []


@pytest.mark.usefixtures("asgi_server")
@pytest.mark.anyio
async def test_a_redirect_outside_the_allow_list_ends_the_probe(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    with start_reflect_server("127.0.0.2") as allowed:
        config = tmp_path / "serve.toml"
        config.write_text('[serve]\nallow_targets = ["127.0.0.2/32"]\n')
        async with running(manager, config) as url:
            response = await get(
                f"{url}/probe",
                params={"target": f"{allowed.url}/redirect?to={web_target.url}", "debug": "true"},
            )
    assert response.status_code == 200
    assert (
        f"critical: redirect 302 to {web_target.url} refused: "
        "127.0.0.1 is not in allow_targets" in response.text
    )
    assert "probe_success 0" in response.text
    assert [path for path, _ in allowed.requests] == [f"/redirect?to={web_target.url}"]
    assert web_target.paths == []


@pytest.mark.anyio
async def test_a_redirect_inside_the_allow_list_is_followed(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    with start_reflect_server("127.0.0.2") as first:
        config = tmp_path / "serve.toml"
        config.write_text('[serve]\nallow_targets = ["127.0.0.1/32", "127.0.0.2/32"]\n')
        async with running(manager, config) as url:
            response = await get(
                f"{url}/probe", params={"target": f"{first.url}/redirect?to={web_target.url}"}
            )
    assert samples(response.text)["probe_success"] == 1
    assert web_target.paths == ["/"]


def test_allow_list_decides_on_names_and_on_the_addresses_connected_to() -> None:
    mixed = AllowList(["*.example.com", "10.0.0.0/8"])
    assert mixed.refusal("www.example.com", ["192.0.2.1"]) is None  # a pattern trusts its DNS
    assert mixed.refusal("db.internal", []) is None  # decided once resolved
    assert mixed.refusal("db.internal", ["10.1.2.3"]) is None
    assert mixed.refusal("db.internal", ["10.1.2.3", "127.0.0.1"]) == (
        "db.internal resolves to 127.0.0.1, which is not in allow_targets"
    )
    assert mixed.refusal("127.0.0.1", ["127.0.0.1"]) == "127.0.0.1 is not in allow_targets"
    assert mixed.refusal("::ffff:10.0.0.1", ["::ffff:10.0.0.1"]) is None
    assert mixed.refusal("a\x00.example.com", []) is not None
    assert not mixed.allows("127.0.0.1\x00.example.com")
    names = AllowList(["*.example.com"])
    assert names.refusal("evil.test", ["10.0.0.1"]) == "evil.test is not in allow_targets"
    assert AllowList().refusal("anything", ["127.0.0.1"]) is None
    assert AllowList().refusal("bad\x00name", []) is not None


# -- credential headers on redirects ---------------------------------------------------

SECRET_HEADERS = {
    "Authorization": "Bearer hdr-t0ken-aaaa",
    "Cookie": "sid=c00kie-bbbb",
    "X-Api-Key": "api-key-cccc",
    "Proxy-Authorization": "Basic cHJveHk6ZGRkZA==",
    "Private-Token": "gitlab-eeee",
}


@pytest.mark.anyio
@pytest.mark.parametrize("keep", [False, True], ids=["dropped", "kept"])
async def test_credential_headers_are_dropped_on_a_cross_origin_redirect(
    manager: PluginManager,
    reflect_server: ReflectServer,
    monkeypatch: pytest.MonkeyPatch,
    keep: bool,
) -> None:
    monkeypatch.setenv("ANYPROBE_TEST_SECRET", "env-secret-ffff")
    with start_reflect_server("127.0.0.2") as other:
        start = f"{reflect_server.url}/redirect?to={other.url}/echo"
        [result] = await anyprobe.check(
            [start],
            manager=manager,
            options={
                "headers": {**SECRET_HEADERS, "X-Plain": "plain"},
                "header_env": {"X-Custom": "ANYPROBE_TEST_SECRET"},
                "keep_credentials_on_redirect": keep,
            },
        )
        assert result.status is anyprobe.Status.OK, result.summary
        [(_, first_headers)] = reflect_server.requests
        [(_, second_headers)] = other.requests
    for name in [*SECRET_HEADERS, "X-Custom"]:
        assert name in first_headers
        assert (name in second_headers) is keep, name
    assert second_headers["X-Plain"] == "plain"


# -- secrets a server echoes back ----------------------------------------------------

BEARER = "s3cret-Bearer-9d8c7b"
ENV_VALUE = "env-Header-Value-5e4f"
BASIC_PASSWORD = "basic-Pa55word-1a2b"
URL_PASSWORD = "url-Pa55word-3c4d"


def _secret_cases(base: str) -> dict[str, tuple[list[str], list[str], dict[str, str]]]:
    """Kind -> (check arguments, secrets that must never show, extra environment)."""
    basic_token = base64.b64encode(f"monitor:{BASIC_PASSWORD}".encode()).decode()
    url_token = base64.b64encode(f"monitor:{URL_PASSWORD}".encode()).decode()
    return {
        "bearer_token": (
            [f"{base}/echo", "--set", f"bearer_token={BEARER}"],
            [BEARER, base64.b64encode(f"Bearer {BEARER}".encode()).decode()],
            {},
        ),
        "header_env": (
            [f"{base}/echo", "--set", 'header_env={"X-Custom" = "ANYPROBE_TEST_SECRET"}'],
            [ENV_VALUE, base64.b64encode(ENV_VALUE.encode()).decode()],
            {"ANYPROBE_TEST_SECRET": ENV_VALUE},
        ),
        "basic_auth": (
            [f"{base}/echo", "--set", "username=monitor", "--set", f"password={BASIC_PASSWORD}"],
            [BASIC_PASSWORD, basic_token],
            {},
        ),
        "url_password": (
            [f"http://monitor:{URL_PASSWORD}@{base.removeprefix('http://')}/echo"],
            [URL_PASSWORD, url_token],
            {},
        ),
    }


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["bearer_token", "header_env", "basic_auth", "url_password"])
def test_secrets_echoed_by_the_server_are_masked_in_every_report(
    reflect_server: ReflectServer, tmp_path: Path, backend: str, kind: str
) -> None:
    args, secrets, env = _secret_cases(reflect_server.url)[kind]
    jsonl = tmp_path / "out.jsonl"
    for assertion in (
        # a failed body_not_matches quotes what it found: the reflected header line
        ["--set", "body_not_matches=(?i)(authorization|x-custom): .*"],
        # ... and its base64 form
        ["--set", "body_not_matches=b64 (Authorization|X-Custom): .*"],
        # a failed expect_headers quotes the header's value
        ["--set", 'expect_headers={"X-Echo-Authorization" = "^nothing-like-it$"}'],
    ):
        proc = run_anyprobe(
            "check",
            *args,
            *assertion,
            "--backend",
            backend,
            "--explain",
            "-r",
            "table",
            "-r",
            f"jsonl={jsonl}",
            env=env,
        )
        output = proc.stdout + proc.stderr + jsonl.read_text()
        assert proc.returncode == 2, output
        if kind != "header_env" or "X-Echo" not in assertion[1]:
            assert "***" in output, output
        for secret in secrets:
            assert secret not in output, (secret, output)
        record = json.loads(jsonl.read_text().splitlines()[0])
        assert record["status"] == "critical"
        assert [path for path, _ in reflect_server.requests][-1] == "/echo"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_set_cookie_value_is_masked_in_every_report(
    reflect_server: ReflectServer, tmp_path: Path, backend: str
) -> None:
    jsonl = tmp_path / "out.jsonl"
    proc = run_anyprobe(
        "check",
        f"{reflect_server.url}/echo",
        "--set",
        'expect_headers={"Set-Cookie" = "^nothing-like-it$"}',
        "--backend",
        backend,
        "--explain",
        "-r",
        "table",
        "-r",
        f"jsonl={jsonl}",
    )
    output = proc.stdout + proc.stderr + jsonl.read_text()
    assert proc.returncode == 2, output
    assert "header set-cookie is '***'" in output
    assert SESSION_COOKIE not in output
    assert base64.b64encode(SESSION_COOKIE.encode()).decode() not in output


@pytest.mark.anyio
async def test_debug_masks_the_module_configuration(
    manager: PluginManager,
    reflect_server: ReflectServer,
    silent_target: SilentTarget,
    tmp_path: Path,
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        "[module.h]\n"
        'probe = "http"\n'
        f'headers = {{Authorization = "Bearer {BEARER}", X-Api-Key = "key-{BEARER}", '
        'Accept = "text/plain"}\n'
        f'proxy = "http://monitor:{URL_PASSWORD}@{reflect_server.host}:{reflect_server.port}"\n'
        "body_not_matches = 'Authorization: .*'\n"
        "[module.t]\n"
        'probe = "tcp"\n'
        'send = "AUTH tcp-Send-Secret-77\\r\\n"\n'
    )
    async with running(manager, config) as url:
        http = await get(
            f"{url}/probe",
            params={"target": f"{reflect_server.url}/echo", "module": "h", "debug": "true"},
        )
        tcp = await get(
            f"{url}/probe",
            params={"target": f"127.0.0.1:{silent_target.port}", "module": "t", "debug": "true"},
        )
    for text in (http.text, tcp.text):
        assert "Module configuration:" in text
        for secret in (BEARER, URL_PASSWORD, "tcp-Send-Secret-77"):
            assert secret not in text, text
    assert '"Authorization": "***"' in http.text
    assert '"Accept": "text/plain"' in http.text
    assert f"http://monitor:***@{reflect_server.host}" in http.text
    assert 'send = "***"' in tcp.text


# -- denial of service: scrape timeout, clients that go away ----------------------------


def test_the_scrape_timeout_header_cannot_raise_the_timeout_past_the_cap() -> None:
    assert probe_timeout(None, "1e308", 0.5) == 120.0
    assert probe_timeout(None, "300", 0.5) == 120.0
    assert probe_timeout(5.0, "1e308", 0.5) == 5.0
    assert probe_timeout(300.0, "1e308", 0.5) == 300.0  # the operator's module says so
    for bad in ("nan", "inf", "-inf", "1e999"):
        with pytest.raises(ValueError):
            probe_timeout(None, bad, 0.5)


@pytest.mark.usefixtures("asgi_server")
@pytest.mark.anyio
async def test_probes_of_clients_that_disconnect_free_their_slots(
    manager: PluginManager, silent_target: SilentTarget, web_target: WebTarget
) -> None:
    clients = 200
    async with running(manager, concurrency=100, max_waiting=100) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        request = (
            f"GET /probe?target=http://127.0.0.1:{silent_target.port}/ HTTP/1.1\r\n"
            f"Host: {host}\r\n\r\n"
        ).encode()
        streams = []
        for _ in range(clients):
            stream = await anyio.connect_tcp(host, int(port))
            await stream.send(request)
            streams.append(stream)
        # Every slot and every waiting place taken: a legitimate probe is turned away.
        for _ in range(400):  # bounded: until the server counted them all
            found = samples((await get(f"{url}/metrics")).text)
            if found["anyprobe_probes_in_flight"] + found["anyprobe_probes_waiting"] == clients:
                break
            await anyio.sleep(0.05)
        assert found["anyprobe_probes_in_flight"] == 100
        assert found["anyprobe_probes_waiting"] == 100
        busy = await get(f"{url}/probe", params={"target": web_target.url})
        assert busy.status_code == 503
        for stream in streams:
            await stream.aclose()
        for _ in range(400):  # bounded: until every probe ended with its client
            found = samples((await get(f"{url}/metrics")).text)
            if found["anyprobe_probes_in_flight"] + found["anyprobe_probes_waiting"] == 0:
                break
            await anyio.sleep(0.05)
        assert found["anyprobe_probes_in_flight"] == found["anyprobe_probes_waiting"] == 0
        legit = await get(f"{url}/probe", params={"target": web_target.url})
    assert legit.status_code == 200
    assert samples(legit.text)["probe_success"] == 1
    assert web_target.paths == ["/"]


# -- processes: the listener's TLS and basic auth, signals, bad values ------------------


@contextmanager
def serve_process(
    backend: str, server: str, *args: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``anyprobe serve`` on an ephemeral loopback port; yields the process and its URL."""
    command = [sys.executable, "-m", "anyprobe", "serve", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--backend", backend, "--server", server, *args],
        env={k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"serving on (https?://\S+)", line)
        assert match, line
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(PROCESS_LIMIT)


def _bcrypt_hash(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def _peer_serial(url: str, ca_file: Path) -> int:
    """The serial number of the certificate the server at ``url`` presents."""
    import ssl

    from cryptography import x509

    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_the_listener_speaks_tls_and_wants_credentials(
    backend: str, server: str, tmp_path: Path, web_target: WebTarget
) -> None:
    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    first = ca.issue_cert("127.0.0.1")
    first.cert_chain_pems[0].write_to_path(tmp_path / "server.crt")
    first.private_key_pem.write_to_path(tmp_path / "server.key")
    web = tmp_path / "web.toml"
    web.write_text(
        '[tls_server_config]\ncert_file = "server.crt"\nkey_file = "server.key"\n'
        f'[basic_auth_users]\nprometheus = "{_bcrypt_hash("right-password")}"\n'
    )
    with serve_process(backend, server, "--web-config", str(web)) as (process, url):
        assert url.startswith("https://127.0.0.1:")
        good = ("prometheus", "right-password")
        import ssl

        trusting = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(verify=trusting, timeout=30) as client:
            for method, path in [
                ("GET", "/probe"),
                ("GET", "/metrics"),
                ("POST", "/-/reload"),
                ("GET", "/-/healthy"),
                ("GET", "/"),
            ]:
                for auth in (None, ("prometheus", "wrong"), ("nobody", "right-password")):
                    refused = client.request(method, f"{url}{path}", auth=auth)
                    assert refused.status_code == 401, (method, path, auth)
                    assert refused.headers["www-authenticate"].startswith("Basic ")
            probe = client.get(f"{url}/probe", params={"target": web_target.url}, auth=good)
            assert probe.status_code == 200
            assert samples(probe.text)["probe_success"] == 1
            assert client.post(f"{url}/-/reload", auth=good).status_code == 200
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(f"{url}/-/healthy", auth=good, timeout=30)
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port
            httpx.get(url.replace("https://", "http://") + "/-/healthy", timeout=30)
        # A new certificate in the same files is served without a restart.
        assert _peer_serial(url, ca_file) == first_serial(first)
        second = ca.issue_cert("127.0.0.1")
        second.private_key_pem.write_to_path(tmp_path / "server.key.new")
        second.cert_chain_pems[0].write_to_path(tmp_path / "server.crt.new")
        os.replace(tmp_path / "server.key.new", tmp_path / "server.key")
        os.replace(tmp_path / "server.crt.new", tmp_path / "server.crt")
        for _ in range(400):  # bounded: until the reload is visible
            if _peer_serial(url, ca_file) == first_serial(second):
                break
            time.sleep(0.05)
        assert _peer_serial(url, ca_file) == first_serial(second)
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


def first_serial(cert: Any) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_a_second_sigterm_during_the_grace_ends_serve_with_exit_0(
    backend: str, server: str, silent_target: SilentTarget
) -> None:
    with serve_process(backend, server, "--grace", "60") as (process, url):
        answers: list[object] = []

        def request() -> None:
            try:
                answers.append(
                    httpx.get(f"{url}/probe", params={"target": silent_target.url}, timeout=60)
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        thread = threading.Thread(target=request)
        thread.start()
        assert silent_target.wait_connected()
        process.send_signal(signal.SIGTERM)
        # The first SIGTERM is being handled once the listener stops accepting.
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(400):  # bounded
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
        thread.join(PROCESS_LIMIT)
        assert process.stderr is not None
        errors = process.stderr.read()
        assert "Traceback" not in errors, errors
        assert errors.strip() == "", errors
        [answer] = answers
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 503
        assert "Shutting down" in answer.text


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_grace_that_is_not_a_finite_number_is_refused(value: str) -> None:
    proc = run_anyprobe("serve", "--listen", "127.0.0.1:0", "--grace", value)
    assert_one_clear_line(proc, "--grace")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tls_server_config]\ncert_file = 'missing.crt'\nkey_file = 'missing.key'\n", "tls"),
        ("[basic_auth_users]\nprometheus = 'plain-text-password'\n", "not a bcrypt hash"),
        ("[basic_auth]\n", "basic_auth"),
        ("not toml", "web.toml"),
    ],
)
def test_a_bad_web_config_is_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    web = tmp_path / "web.toml"
    web.write_text(text)
    proc = run_anyprobe("serve", "--listen", "127.0.0.1:0", "--web-config", str(web))
    assert_one_clear_line(proc, "--web-config", fragment)


def test_one_masking_rule_for_secrets_raw_encoded_and_in_urls() -> None:
    from anyprobe.masking import Masker, is_credential_header, mask_url_password

    masker = Masker()
    basic = base64.b64encode(b"monitor:pa55@word").decode()
    masker.add_header("Authorization", f"Basic {basic}")
    masker.add_header("Set-Cookie", "sid=c00kie-value; Path=/")
    masker.add_header("Accept", "text/plain")  # not a credential: nothing to hide
    assert masker.text(f"Authorization: Basic {basic}") == "Authorization: ***"
    assert masker.text(f"token {basic}") == "token ***"
    assert masker.text("password pa55@word, percent pa55%40word") == "password ***, percent ***"
    assert masker.text(base64.b64encode(b"pa55@word").decode()) == "***"
    assert masker.text("cookie c00kie-value") == "cookie ***"
    assert masker.text("Accept: text/plain") == "Accept: text/plain"
    assert mask_url_password("see http://u:pw@h/ and ftp://x:y@z") == (
        "see http://u:***@h/ and ftp://x:***@z"
    )
    assert masker.header("X-Vault-Token", "anything") == "***"
    for name in ("Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "Private-Token"):
        assert is_credential_header(name)
    assert not is_credential_header("Accept")


@pytest.mark.anyio
async def test_through_a_proxy_a_target_name_must_match_a_pattern(
    manager: PluginManager, reflect_server: ReflectServer, tmp_path: Path
) -> None:
    # The proxy (the reflecting server, allowed as 127.0.0.1) would resolve the
    # name itself: the networks cannot vouch for a name anyprobe does not resolve.
    config = tmp_path / "serve.toml"
    config.write_text(
        '[serve]\nallow_targets = ["127.0.0.0/8"]\n'
        f'[module.p]\nprobe = "http"\nproxy = "{reflect_server.url}"\n'
    )
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe",
            params={"target": "http://internal-admin/", "module": "p", "debug": "true"},
        )
    assert "critical: internal-admin is not in allow_targets" in response.text
    assert reflect_server.requests == []
