"""Attacks on ``anyprobe serve``'s allow-list and on secret masking that the
first round of fixes missed, each with the defect it found. Real loopback
sockets, both backends."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import anyio
import pytest

from anyprobe import PluginManager
from anyprobe.masking import Masker
from anyprobe.testing import HttpReply, HttpRequest, HttpServer
from tests.cli import anyprobe as run_anyprobe
from tests.servers.ssh import SshServer
from tests.servers.threaded import accept_in_thread
from tests.test_serve import get, running

#: A header_env value with characters that every encoding changes: ``/`` (JSON
#: ``\\/``, ``%2F``), ``"``, a space (``+`` or ``%20``), ``+`` (``%2B``).
SECRET = 'RtK/9"p x+Qz-7d'
#: What every form of SECRET starts with: never in an output.
SECRET_HEAD = "RtK"
ENV = {"REDTEAM_KEY": SECRET}


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


def reflected_forms(value: str) -> dict[str, str]:
    """Form name -> how a server may write ``value`` back."""
    escaped = json.dumps(value)[1:-1]
    return {
        "json": escaped.replace("/", "\\/"),
        "pct-lower": _lower_hex(quote(value, safe="")),
        "pct-path": quote(value),
        "plus": quote_plus(value),
        "plus-lower": _lower_hex(quote_plus(value)),
        "partial": value,  # matched only in part by the pattern below
    }


#: Form name -> a body_not_matches pattern that quotes the form's line.
PATTERNS = {
    "json": "json: .*",
    "pct-lower": "pct-lower: .*",
    "pct-path": "pct-path: .*",
    "plus": "plus: .*",
    "plus-lower": "plus-lower: .*",
    "partial": "partial: .{5}",
}


@dataclass
class EncodingReflector:
    """``GET /enc``: the request's X-Api-Key written back in every form of
    :func:`reflected_forms`, one ``name: form`` line each. ``GET /redir``: a
    302 whose Location carries the key as a query value."""

    server: HttpServer

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def paths(self) -> list[str]:
        return [request.target for request in list(self.server.requests)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _reflect(request: HttpRequest) -> HttpReply:
    key = request.header("X-Api-Key") or ""
    if request.path == "/redir":
        return HttpReply(302, headers={"Location": f"/enc?k={quote_plus(key)}"}, content_type=None)
    lines = [f"{name}: {form}" for name, form in reflected_forms(key).items()]
    return HttpReply(200, "\n".join(lines) + "\n", content_type=None)


@pytest.fixture
def reflector(anyprobe_http_server: Callable[..., HttpServer]) -> EncodingReflector:
    return EncodingReflector(anyprobe_http_server(default=_reflect))


# -- masking: the forms a server writes a secret back in ------------------------------


def test_every_encoded_form_of_a_secret_is_masked() -> None:
    masker = Masker([SECRET])
    for name, form in reflected_forms(SECRET).items():
        assert masker.text(f"<{form}>") == "<***>", name


def test_an_excerpt_that_holds_part_of_a_secret_masks_it_whole() -> None:
    masker = Masker([SECRET])
    text = f"partial: {SECRET} and more"
    start = text.index(SECRET)
    assert masker.excerpt(text, start - 9, start + 5) == "partial: ***"
    assert masker.excerpt(text, start + 3, start + 6) == "***"
    assert masker.excerpt(text, 0, 8) == "partial:"
    assert masker.excerpt(text, start + len(SECRET), len(text)) == " and more"


@pytest.mark.anyio
@pytest.mark.parametrize("form", list(PATTERNS))
async def test_serve_masks_a_secret_reflected_in_any_encoding(
    manager: PluginManager,
    reflector: EncodingReflector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    monkeypatch.setenv("REDTEAM_KEY", SECRET)
    config = tmp_path / "serve.toml"
    config.write_text(
        "[module.h]\n"
        'probe = "http"\n'
        'header_env = {X-Api-Key = "REDTEAM_KEY"}\n'
        f"body_not_matches = [{json.dumps(PATTERNS[form])}]\n"
    )
    async with running(manager, config) as url:
        debug = await get(
            f"{url}/probe",
            params={"target": f"{reflector.url}/redir", "module": "h", "debug": "true"},
        )
        plain = await get(f"{url}/probe", params={"target": f"{reflector.url}/enc", "module": "h"})
        metrics = await get(f"{url}/metrics")
    assert f"critical: HTTP 200: body matches {PATTERNS[form]!r}" in debug.text, debug.text
    assert "***" in debug.text
    for text in (debug.text, plain.text, metrics.text):
        assert SECRET_HEAD not in text, text
    assert reflector.paths[0] == "/redir"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("form", ["json", "pct-lower", "plus", "partial"])
def test_every_report_masks_a_secret_reflected_in_any_encoding(
    reflector: EncodingReflector, tmp_path: Path, backend: str, form: str
) -> None:
    files = {name: tmp_path / f"out.{name}" for name in ("jsonl", "junit", "csv", "markdown")}
    proc = run_anyprobe(
        "check",
        f"{reflector.url}/redir",
        "--set",
        'header_env={"X-Api-Key" = "REDTEAM_KEY"}',
        "--set",
        f"body_not_matches={PATTERNS[form]}",
        "--backend",
        backend,
        "--explain",
        "-vv",
        "-r",
        "table",
        "-r",
        "nagios",
        *[arg for name, path in files.items() for arg in ("-r", f"{name}={path}")],
        env=ENV,
    )
    output = proc.stdout + proc.stderr + "".join(p.read_text() for p in files.values())
    assert proc.returncode == 2, output
    assert "body matches" in output
    assert "***" in output
    assert SECRET_HEAD not in output, output


# -- the allow-list: the DNS probe's system resolvers ---------------------------------


@pytest.mark.anyio
async def test_the_dns_probes_system_resolvers_are_checked_against_the_allow_list(
    manager: PluginManager, tmp_path: Path
) -> None:
    # dns:///NAME asks the resolvers of resolv_conf: before, they were asked
    # whatever allow_targets said (here 127.0.0.9, outside 127.0.0.3/32).
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.9\n")
    config = tmp_path / "serve.toml"
    config.write_text(
        "[module.d]\n"
        'probe = "dns"\n'
        "timeout = 2\n"
        f"resolv_conf = {json.dumps(str(resolv))}\n"
        "[serve]\n"
        'allow_targets = ["127.0.0.3/32"]\n'
    )
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe",
            params={"target": "dns:///host.example.com", "module": "d", "debug": "true"},
        )
    assert response.status_code == 200
    assert "critical: 127.0.0.9 is not in allow_targets" in response.text, response.text
    assert "probe_success 0" in response.text


# -- masking: the TCP probe's ``send`` echoed back ------------------------------------

#: Sent by the TCP probe (a secret field); the echo server sends it back raw and
#: in base64, longer than a summary quotes, so the quote is cut inside it.
TCP_SECRET = "AUTH Tcp-Send-Secret-77"


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback TCP server that answers ``ECHO <what came>`` and ``B64 <base64>``."""

    def echo(client: socket.socket) -> None:
        data = client.recv(4096)
        client.sendall(b"ECHO " + data + b"\nB64 " + base64.b64encode(data) + b"\n")

    with accept_in_thread(echo) as port:
        yield port


def _tcp_leaks(text: str) -> list[str]:
    sent = (TCP_SECRET + "\r\n").encode()
    encoded = base64.b64encode(sent).decode()
    return [form for form in ("Send-Secret", encoded[:12]) if form in text]


@pytest.mark.anyio
async def test_serve_masks_the_tcp_send_text_a_server_echoes(
    manager: PluginManager, echo_port: int, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[module.t]\nprobe = "tcp"\nsend = "{TCP_SECRET}\\r\\n"\nexpect = "NOT-THERE"\n'
    )
    async with running(manager, config) as url:
        debug = await get(
            f"{url}/probe",
            params={"target": f"127.0.0.1:{echo_port}", "module": "t", "debug": "true"},
        )
    assert "critical: expected 'NOT-THERE'" in debug.text, debug.text
    assert "got 'ECHO ***" in debug.text
    assert _tcp_leaks(debug.text) == [], debug.text


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_report_masks_the_tcp_send_text_a_server_echoes(
    echo_port: int, tmp_path: Path, backend: str
) -> None:
    files = {name: tmp_path / f"out.{name}" for name in ("jsonl", "junit", "csv", "markdown")}
    proc = run_anyprobe(
        "check",
        f"tcp://127.0.0.1:{echo_port}",
        "--set",
        f"send={TCP_SECRET}\\r\\n",
        "--set",
        "expect=NOT-THERE",
        "--backend",
        backend,
        "--explain",
        "-vv",
        "-r",
        "table",
        "-r",
        "nagios",
        *[arg for name, path in files.items() for arg in ("-r", f"{name}={path}")],
    )
    output = proc.stdout + proc.stderr + "".join(p.read_text() for p in files.values())
    assert proc.returncode == 2, output
    assert "ECHO ***" in output
    assert _tcp_leaks(output) == [], output


def test_a_secret_cut_short_by_a_clipped_quote_is_masked() -> None:
    masker = Masker()
    masker.add_bytes(b"AUTH Tcp-Send-Secret-77\r\n")
    encoded = base64.b64encode(b"AUTH Tcp-Send-Secret-77\r\n").decode()
    assert masker.text("got 'ECHO AUTH Tcp-Se'... (72 bytes)") == "got 'ECHO ***'... (72 bytes)"
    assert masker.text(f"got '{encoded[:20]}...'") == "got '***...'"
    assert masker.text("got 'AUTH Tcp-Send-Secret-77\\r\\n'") == "got '***'"
    # Only right before a clip: the same first characters elsewhere are left alone.
    assert masker.text("AUTH is fine") == "AUTH is fine"


# -- masking: an SSH password the remote prints -------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_every_report_masks_an_ssh_password_the_remote_prints(
    ssh_server: SshServer, tmp_path: Path, backend: str
) -> None:
    # The remote prints the password_env value in base64 (a command or a login
    # script that shows the environment); expect_output fails and quotes it.
    encoded = base64.b64encode(ssh_server.password.encode()).decode()
    files = {name: tmp_path / f"out.{name}" for name in ("jsonl", "junit", "csv", "markdown")}
    proc = run_anyprobe(
        "check",
        ssh_server.url,
        "--set",
        f"known_hosts={ssh_server.known_hosts}",
        "--set",
        "password_env=REDTEAM_SSH_PASSWORD",
        "--set",
        f"command=echo {encoded}",
        "--set",
        "expect_output=nothing-like-it",
        "--backend",
        backend,
        "--explain",
        "-vv",
        "-r",
        "table",
        "-r",
        "nagios",
        *[arg for name, path in files.items() for arg in ("-r", f"{name}={path}")],
        env={"REDTEAM_SSH_PASSWORD": ssh_server.password},
    )
    output = proc.stdout + proc.stderr + "".join(p.read_text() for p in files.values())
    assert proc.returncode == 2, output
    assert "does not match 'nothing-like-it' (got '***')" in output, output
    assert encoded not in output
    assert ssh_server.password not in output


# -- denial of service: requests that never end, requests too large -------------------


@pytest.mark.usefixtures("asgi_server")
@pytest.mark.anyio
async def test_unfinished_and_oversized_requests_do_not_stop_probes(
    manager: PluginManager, reflector: EncodingReflector
) -> None:
    async with running(manager) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        assert host is not None and port is not None

        def attack() -> tuple[list[socket.socket], bytes]:
            # 200 clients that send half a request and stop (slowloris)...
            stalled = []
            for _ in range(200):
                client = socket.create_connection((host, port))
                client.sendall(b"GET /probe?target=x HTTP/1.1\r\nHost: x\r\nX-Slow")
                stalled.append(client)
            # ... and one whose request line is 100 kB long (hypercorn takes 16 kB).
            with socket.create_connection((host, port), timeout=30) as big:
                big.sendall(b"GET /probe?target=" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")
                return stalled, big.recv(100)

        stalled, answer = await anyio.to_thread.run_sync(attack)
        try:
            assert answer.startswith(b"HTTP/1.1 431 "), answer
            response = await get(f"{url}/probe", params={"target": f"{reflector.url}/"})
        finally:
            for client in stalled:
                client.close()
    assert response.status_code == 200
    assert "probe_success 1" in response.text
