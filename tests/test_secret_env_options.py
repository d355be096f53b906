"""The built-in secrets from the environment are ``anyprobe.SecretEnv`` options.

The HTTP probe (``password_env``, ``bearer_token_env``, ``header_env``), the
SSH probe (``password_env``, ``key_passphrase_env``) and the webhook reporter
(``url_env``, ``bearer_token_env``, ``password_env``, ``header_env``) read
their variables when the options are validated: an unset or empty one is one
line naming the check (or the reporter), the field and the variable, exit 3,
before anything runs; a value is never shown, in any output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from anyprobe import PluginManager
from anyprobe.testing import HttpReply, HttpRequest, HttpServer
from tests.cli import anyprobe as run_anyprobe
from tests.cli import assert_one_clear_line
from tests.servers.ssh import SshServer
from tests.servers.webhook import WebhookReceiver
from tests.test_serve import REQUEST_LIMIT, running, samples

VARIABLE = "ANYPROBE_TEST_SECRET_VARIABLE"
SECRET = "s3cret-from-env-Qv7"

#: (probe, URL, the option as TOML, the field named in the error)
CHECK_SECRETS = [
    ("http", "http://127.0.0.1:9/", f'bearer_token_env = "{VARIABLE}"', "bearer_token_env"),
    (
        "http",
        "http://127.0.0.1:9/",
        f'username = "ops"\npassword_env = "{VARIABLE}"',
        "password_env",
    ),
    (
        "http",
        "http://127.0.0.1:9/",
        f'header_env = {{ X-Api-Key = "{VARIABLE}" }}',
        "header_env",
    ),
    ("ssh", "ssh://127.0.0.1:9", f'password_env = "{VARIABLE}"', "password_env"),
    ("ssh", "ssh://127.0.0.1:9", f'key_passphrase_env = "{VARIABLE}"', "key_passphrase_env"),
]
STATES = [({}, "is not set"), ({VARIABLE: ""}, "is empty")]


@pytest.mark.parametrize(("env", "problem"), STATES, ids=["unset", "empty"])
@pytest.mark.parametrize(
    ("probe", "url", "option", "field"),
    CHECK_SECRETS,
    ids=[
        "bearer_token_env",
        "password_env",
        "header_env",
        "ssh_password_env",
        "key_passphrase_env",
    ],
)
def test_a_config_naming_an_unset_or_empty_variable_is_one_line(
    tmp_path: Path,
    probe: str,
    url: str,
    option: str,
    field: str,
    env: dict[str, str],
    problem: str,
) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(f'[[check]]\nname = "guarded"\nurl = "{url}"\n{option}\n')
    proc = run_anyprobe("run", str(config), env=env)
    line = assert_one_clear_line(
        proc, "checks.toml:", "check 'guarded'", f"field '{field}'", VARIABLE, problem
    )
    assert line.endswith(f"environment variable {VARIABLE} {problem}"), line
    if field == "header_env":
        assert "header X-Api-Key: environment variable" in line


@pytest.mark.parametrize(("env", "problem"), STATES, ids=["unset", "empty"])
@pytest.mark.parametrize(
    ("url", "options", "field"),
    [
        ("http://127.0.0.1:9/", [f"bearer_token_env={VARIABLE}"], "bearer_token_env"),
        ("http://127.0.0.1:9/", [f'header_env={{X-Key="{VARIABLE}"}}'], "header_env"),
        ("ssh://127.0.0.1:9", [f"password_env={VARIABLE}"], "password_env"),
    ],
)
def test_set_naming_an_unset_or_empty_variable_is_one_line(
    url: str, options: list[str], field: str, env: dict[str, str], problem: str
) -> None:
    sets = [arg for option in options for arg in ("--set", option)]
    proc = run_anyprobe("check", url, *sets, env=env)
    assert_one_clear_line(
        proc, "--set", f"check {url}", f"field '{field}'", f"environment variable {VARIABLE}"
    )
    assert proc.stderr.strip().endswith(problem)


@pytest.mark.parametrize(("env", "problem"), STATES, ids=["unset", "empty"])
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (f"webhook:url_env={VARIABLE}", "url_env"),
        (f"webhook:url=http://127.0.0.1:9/,bearer_token_env={VARIABLE}", "bearer_token_env"),
        (
            f"webhook:url=http://127.0.0.1:9/,username=u,password_env={VARIABLE}",
            "password_env",
        ),
        (
            f'webhook:url=http://127.0.0.1:9/,header_env={{X-Key="{VARIABLE}"}}',
            "header_env",
        ),
    ],
)
def test_a_webhook_naming_an_unset_or_empty_variable_is_one_line_before_the_run(
    spec: str, field: str, env: dict[str, str], problem: str
) -> None:
    proc = run_anyprobe("check", "tcp://127.0.0.1:9", "-r", spec, env=env)
    assert_one_clear_line(
        proc, "--report webhook", f"field '{field}'", f"environment variable {VARIABLE} {problem}"
    )


def test_a_webhook_table_naming_an_unset_variable_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(
        '[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:9"\n\n'
        f'[[reporter]]\ntype = "webhook"\nurl_env = "{VARIABLE}"\n'
    )
    proc = run_anyprobe("run", str(config))
    assert_one_clear_line(
        proc, "checks.toml:7", "field 'url_env'", f"environment variable {VARIABLE} is not set"
    )


@pytest.mark.parametrize(
    ("url", "option", "value", "message"),
    [
        ("http://127.0.0.1:9/", f"bearer_token_env={VARIABLE}", f" {SECRET}", "space"),
        ("http://127.0.0.1:9/", f"bearer_token_env={VARIABLE}", f"{SECRET}\n", "control"),
        ("http://127.0.0.1:9/", f'header_env={{X-Key="{VARIABLE}"}}', f"{SECRET}\r\n", "control"),
        ("tcp://127.0.0.1:9", None, f"ftp://127.0.0.1/{SECRET}", "http:// or https://"),
    ],
)
def test_a_value_that_cannot_be_sent_is_refused_without_showing_it(
    url: str, option: str | None, value: str, message: str
) -> None:
    args = ["--set", option] if option else ["-r", f"webhook:url_env={VARIABLE}"]
    proc = run_anyprobe("check", url, *args, env={VARIABLE: value})
    line = assert_one_clear_line(proc, VARIABLE, message)
    assert SECRET not in proc.stdout + proc.stderr, line


def test_a_secret_option_that_is_the_secret_itself_is_not_echoed() -> None:
    proc = run_anyprobe("check", "ssh://127.0.0.1:9", "--set", f"password_env={SECRET}!")
    assert_one_clear_line(proc, "field 'password_env'", "NAME of an environment variable")
    assert SECRET not in proc.stderr


# -- the values never show ------------------------------------------------------------


def _echo_headers(request: HttpRequest) -> HttpReply:
    """500 with the request's headers as the body: a summary quoting it would leak."""
    lines = "".join(f"{name}: {value}\n" for name, value in request.raw_headers)
    return HttpReply(500, lines, content_type=None)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ([f'header_env={{X-Api-Key="{VARIABLE}"}}'], f"X-Api-Key: {SECRET}"),
        ([f"bearer_token_env={VARIABLE}"], f"Authorization: Bearer {SECRET}"),
        (["username=ops", f"password_env={VARIABLE}"], "Authorization: Basic "),
    ],
)
def test_http_secrets_never_show_in_results_traces_or_logs(
    tmp_path: Path,
    anyprobe_http_server: Callable[..., HttpServer],
    backend: str,
    options: list[str],
    sent: str,
) -> None:
    server = anyprobe_http_server(default=_echo_headers)
    jsonl = tmp_path / "results.jsonl"
    sets = [arg for option in options for arg in ("--set", option)]
    proc = run_anyprobe(
        "-vv", "check", server.url("/echo"), *sets, "--set", f"body_matches={SECRET}",
        "--explain", "--backend", backend, "-r", "table", "-r", f"jsonl={jsonl}",
        env={VARIABLE: SECRET},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    received = [f"{name}: {value}" for name, value in server.requests[0].raw_headers]
    assert any(header.startswith(sent) for header in received), received
    record = json.loads(jsonl.read_text())
    assert record["status"] == "critical"
    output = proc.stdout + proc.stderr + jsonl.read_text()
    assert "***" in proc.stdout  # the --explain trace shows the masked header
    assert SECRET not in output


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_ssh_password_never_shows_even_when_the_remote_prints_it(
    tmp_path: Path, ssh_server: SshServer, backend: str
) -> None:
    jsonl = tmp_path / "results.jsonl"
    proc = run_anyprobe(
        "-vv", "check", ssh_server.url, "--set", f"known_hosts={ssh_server.known_hosts}",
        "--set", f"password_env={VARIABLE}", "--set", f'command=echo "${VARIABLE}"',
        "--set", "expect_output=nothing-like-it", "--explain", "--backend", backend,
        "-r", "table", "-r", f"jsonl={jsonl}",
        env={VARIABLE: ssh_server.password},
    )  # fmt: skip
    output = proc.stdout + proc.stderr + jsonl.read_text()
    assert proc.returncode == 2, output
    assert json.loads(jsonl.read_text())["status"] == "critical"
    assert ssh_server.password not in output


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_webhook_secrets_never_show_in_errors_or_logs(
    webhook_receiver: WebhookReceiver, backend: str
) -> None:
    # The receiver refuses every POST: the failure line and httpx's logs name
    # the URL; its keyed path, the token and the header are masked.
    webhook_receiver.statuses = [403]
    key = "T000-K3Y-7hx2Lq"
    env = {
        "HOOK_URL": f"{webhook_receiver.url}/{key}",
        "HOOK_TOKEN": SECRET,
        "HOOK_KEY": "hdr-Secret-9pw",
    }
    spec = "webhook:url_env=HOOK_URL,bearer_token_env=HOOK_TOKEN,header_env={X-Key='HOOK_KEY'}"
    proc = run_anyprobe(
        "-vv", "check", "tcp://127.0.0.1:9", "--backend", backend, "-r", "jsonl", "-r", spec,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "reporter webhook failed" in proc.stderr
    request = webhook_receiver.requests[0]
    assert request.path == f"/hook/{key}"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-key"] == env["HOOK_KEY"]
    output = proc.stdout + proc.stderr
    for value in (key, SECRET, env["HOOK_KEY"]):
        assert value not in output


# -- anyprobe serve: a reload naming an unset variable fails like any bad config ---------


@pytest.mark.anyio
async def test_a_reload_naming_an_unset_variable_keeps_the_running_config(
    manager: PluginManager,
    anyprobe_http_server: Callable[..., HttpServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = {"Authorization": f"Bearer {SECRET}"}
    server = anyprobe_http_server(
        default=lambda request: HttpReply(200 if request.header("authorization") else 401, "x")
    )
    monkeypatch.setenv(VARIABLE, SECRET)
    monkeypatch.delenv("ANYPROBE_TEST_UNSET_VARIABLE", raising=False)
    config = tmp_path / "serve.toml"
    config.write_text(f'[module.api]\nprobe = "http"\nbearer_token_env = "{VARIABLE}"\n')
    params = {"target": server.url("/"), "module": "api"}
    async with running(manager, config) as url, httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        first = await client.get(f"{url}/probe", params=params)
        assert samples(first.text)["probe_success"] == 1
        config.write_text(
            '[module.api]\nprobe = "http"\nbearer_token_env = "ANYPROBE_TEST_UNSET_VARIABLE"\n'
        )
        refused = await client.post(f"{url}/-/reload")
        still = await client.get(f"{url}/probe", params=params)
        metrics = await client.get(f"{url}/metrics")
    assert refused.status_code == 500
    assert "keeping the running one" in refused.text
    assert "field 'bearer_token_env'" in refused.text
    assert "environment variable ANYPROBE_TEST_UNSET_VARIABLE is not set" in refused.text
    assert samples(still.text)["probe_success"] == 1
    assert samples(metrics.text)["anyprobe_config_last_reload_successful"] == 0
    assert server.requests[-1].header("authorization") == token["Authorization"]
    assert SECRET not in refused.text + still.text + metrics.text
