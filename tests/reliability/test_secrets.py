"""Secrets never reach any output: every reporter, with passwords and tokens in
options, in the environment and in URLs.

Loopback HTTP servers make the checks pass, fail on authentication (401),
fail with a body that echoes the request's headers back (so a careless
summary or trace would carry the secret), and a webhook receiver gets the
webhook reporter's POSTs. Every byte anyprobe writes -- the table with
``--explain`` traces, JSON Lines, JUnit XML, Prometheus text, the Nagios
output, CSV, Markdown, the webhook bodies, stderr with ``-vv`` -- is searched
for every secret, raw and in the base64 of basic authentication.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from anyprobe.testing import HttpReply, HttpRequest, HttpServer
from tests.servers.webhook import WebhookReceiver

from .conftest import anyprobe_command, clean_env

pytestmark = pytest.mark.slow

URL_PASSWORD = "urlpw-Zq8v"
OPTION_PASSWORD = "optpw-K3nb"
OPTION_TOKEN = "opttok-X9fa"
ENV_TOKEN = "envtok-M4ds"
ENV_HEADER = "envkey-P7qe"
ENV_PASSWORD = "envpw-R2hy"
SSH_PASSWORD = "sshpw-T6ck"
HOOK_PATH_KEY = "hookkey-Y5wu"
HOOK_TOKEN = "hooktok-W1zr"
ENV = {
    "ANYPROBE_TEST_TOKEN": ENV_TOKEN,
    "ANYPROBE_TEST_HEADER": ENV_HEADER,
    "ANYPROBE_TEST_PASSWORD": ENV_PASSWORD,
    "ANYPROBE_TEST_SSH_PASSWORD": SSH_PASSWORD,
    "ANYPROBE_TEST_HOOK_TOKEN": HOOK_TOKEN,
}
SECRETS = [
    URL_PASSWORD, OPTION_PASSWORD, OPTION_TOKEN, ENV_TOKEN, ENV_HEADER, ENV_PASSWORD,
    SSH_PASSWORD, HOOK_PATH_KEY, HOOK_TOKEN,
]  # fmt: skip
ENCODED = {
    f"base64 of alice:{password}": base64.b64encode(f"alice:{password}".encode()).decode()
    for password in (URL_PASSWORD, OPTION_PASSWORD, ENV_PASSWORD)
}


def echo(request: HttpRequest) -> HttpReply:
    """/ok 200; /auth 401 unless the bearer token is right; /echo 500 with the
    request's headers as the body; /redirect to /echo with credentials in it."""
    cookie = {"Set-Cookie": f"session={ENV_TOKEN}"}
    if request.path.startswith("/ok"):
        return HttpReply(200, "UP\n", headers=cookie, content_type=None)
    if request.path.startswith("/auth"):
        challenge = {"WWW-Authenticate": 'Bearer realm="x"', **cookie}
        return HttpReply(401, "who are you?\n", headers=challenge, content_type=None)
    if request.path.startswith("/redirect"):
        host = request.header("host") or ""  # 127.0.0.1:PORT
        location = f"http://alice:{URL_PASSWORD}@{host}/echo"
        return HttpReply(302, headers={"Location": location, **cookie}, content_type=None)
    lines = "".join(f"{name}: {value}\n" for name, value in request.raw_headers)
    return HttpReply(500, lines + "\n", headers=cookie, content_type=None)


@pytest.fixture
def echo_port(anyprobe_http_server: Callable[..., HttpServer]) -> int:
    return anyprobe_http_server(default=echo).port


def config(port: int, closed_port: int, hook_url: str) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
[defaults]
timeout = 5

[[check]]
name = "password in the URL"
url = "http://alice:{URL_PASSWORD}@127.0.0.1:{port}/ok"

[[check]]
name = "password in the URL, echoed"
url = "http://alice:{URL_PASSWORD}@127.0.0.1:{port}/echo"
body_matches = "never there"

[[check]]
name = "password option"
url = "{base}/echo?p=1"
username = "alice"
password = "{OPTION_PASSWORD}"

[[check]]
name = "bearer token option"
url = "{base}/auth"
bearer_token = "{OPTION_TOKEN}"

[[check]]
name = "bearer token from env"
url = "{base}/echo?p=2"
bearer_token_env = "ANYPROBE_TEST_TOKEN"

[[check]]
name = "header from env"
url = "{base}/echo?p=3"
header_env = {{ X-Api-Key = "ANYPROBE_TEST_HEADER" }}

[[check]]
name = "password from env"
url = "{base}/echo?p=4"
username = "alice"
password_env = "ANYPROBE_TEST_PASSWORD"

[[check]]
name = "redirect with credentials"
url = "{base}/redirect"

[[check]]
name = "refused with password in the URL"
url = "http://alice:{URL_PASSWORD}@127.0.0.1:{closed_port}/"

[[check]]
name = "ssh password from env"
url = "ssh://alice@127.0.0.1:{closed_port}"
password_env = "ANYPROBE_TEST_SSH_PASSWORD"

[[reporter]]
type = "webhook"
url = "{hook_url}/{HOOK_PATH_KEY}"
mode = "per_result"
bearer_token_env = "ANYPROBE_TEST_HOOK_TOKEN"

[[reporter]]
type = "webhook"
url = "{hook_url}/{HOOK_PATH_KEY}/batch"
template = "slack"
"""


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} appears in {where}"
    for what, encoded in ENCODED.items():
        assert encoded not in text, f"{what} appears in {where}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_no_secret_in_any_report_trace_or_log(
    tmp_path: Path,
    backend: str,
    echo_port: int,
    closed_port: int,
    webhook_receiver: WebhookReceiver,
) -> None:
    path = tmp_path / "checks.toml"
    path.write_text(config(echo_port, closed_port, webhook_receiver.url.rstrip("/")))
    files = {
        "jsonl": "r.jsonl", "junit": "r.xml", "prometheus": "r.prom", "nagios": "r.nagios",
        "csv": "r.csv", "markdown": "r.md",
    }  # fmt: skip
    reports = [f"-r{name}={tmp_path / file}" for name, file in files.items()]
    proc = subprocess.run(
        anyprobe_command(
            "-vv", "run", str(path), "--backend", backend, "--explain", "--no-progress",
            "-r", "table", *reports,
        ),
        capture_output=True,
        text=True,
        env=clean_env(**ENV),
        timeout=120,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    assert len(by_name) == 10
    # The checks really sent their secrets: the server saw them and refused or echoed.
    assert by_name["password in the URL"]["status"] == "ok"
    assert by_name["bearer token option"]["metrics"]["http_status"] == 401
    assert by_name["header from env"]["metrics"]["http_status"] == 500
    # The URL shown keeps the user, not the password.
    assert by_name["password in the URL"]["target"].startswith("http://alice:***@127.0.0.1")
    # The traces were printed (so they were searched too).
    assert "X-Api-Key" in proc.stdout or "x-api-key" in proc.stdout.lower()

    assert_no_secret("the table and traces on stdout", proc.stdout)
    assert_no_secret("stderr", proc.stderr)
    for name, file in files.items():
        assert_no_secret(f"the {name} report", (tmp_path / file).read_text())
    posted = webhook_receiver.requests
    assert len(posted) == 11  # 10 per-result POSTs and one batch
    for request in posted:
        assert_no_secret(f"a webhook body to {request.path}", request.body.decode())


@pytest.mark.parametrize(
    "args",
    [
        ["check", f"tcp://alice:{URL_PASSWORD}@127.0.0.1:9"],
        ["check", f"http://alice:{URL_PASSWORD}@127.0.0.1:9/", "--set", "password=x"],
        ["check", f"http://alice:{URL_PASSWORD}@127.0.0.1:99999/"],
        ["check", "http://127.0.0.1:9/", "--set", f"bearer_token={OPTION_TOKEN}\n"],
        ["check", f"ssh://alice:{SSH_PASSWORD}@127.0.0.1:9"],
        ["check", "http://127.0.0.1:9/", "--set", "bearer_token_env=ANYPROBE_TEST_UNSET"],
        ["check", "tcp://127.0.0.1:9", "-r", f"webhook=http://127.0.0.1:9/{HOOK_PATH_KEY}"],
        ["check", "tcp://127.0.0.1:9", "-r", f"webhook=ftp://127.0.0.1/{HOOK_PATH_KEY}"],
    ],
)
def test_no_secret_in_error_lines(args: list[str]) -> None:
    proc = subprocess.run(
        anyprobe_command(*args),
        capture_output=True,
        text=True,
        env=clean_env(**ENV),
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (2, 3), proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).strip(), "expected an error line or a result"
    assert_no_secret("the error line", proc.stdout + proc.stderr)
