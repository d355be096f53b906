"""SecretEnv: a secret option named by an environment variable, masked everywhere."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import anyprobe
from anyprobe import PluginManager
from anyprobe.masking import is_secret_field, options_masker
from anyprobe.testing import LineServer, run_checks
from tests.cli import anyprobe as run_anyprobe
from tests.cli import assert_one_clear_line
from tests.test_plugins import make_distribution

SECRET = "hunter2-s3cret"
NOT_A_NAME = "must be the NAME of an environment variable"

AUTH_PLUGIN = """
    import anyio
    from pydantic import Field
    import anyprobe

    class AuthOptions(anyprobe.ProbeOptions):
        password: anyprobe.SecretEnv = Field(description="Variable holding the password.")

    class AuthProbe(anyprobe.Probe[AuthOptions]):
        name = "auth"
        schemes = ("auth",)
        Options = AuthOptions

        async def check(self, target, options, ctx):
            stream = await anyio.connect_tcp(target.host, target.port)
            async with stream:
                await stream.send(f"AUTH {options.password.get_secret_value()}\\r\\n".encode())
                reply = (await stream.receive()).decode().strip()
            ctx.trace(f"server said {reply}")
            return anyprobe.Outcome.ok(f"server said {reply}")

    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        register(AuthProbe)
"""


class AuthOptions(anyprobe.ProbeOptions):
    password: anyprobe.SecretEnv = Field(description="Variable holding the password.")


class AuthProbe(anyprobe.Probe[AuthOptions]):
    """Sends AUTH with the secret, reports and traces what the server said."""

    name = "auth"
    schemes = ("auth",)
    Options = AuthOptions

    async def check(
        self, target: anyprobe.Target, options: AuthOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send(f"AUTH {options.password.get_secret_value()}\r\n")
            reply = await conn.read_line()
        ctx.trace(f"server said {reply}")
        ctx.metrics["reply"] = reply
        if reply.startswith("-"):
            raise anyprobe.CheckFailed(f"AUTH refused: {reply}")
        return anyprobe.Outcome.ok(f"server said {reply}")


class AuthPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(AuthProbe)


def _echo_auth(line: str) -> str:
    _, _, password = line.partition(" ")
    return f"+OK welcome, {password}" if password == SECRET else f"-ERR wrong password {password}"


@pytest.fixture
def auth_manager(manager: PluginManager) -> PluginManager:
    manager.register(AuthPlugin(), name="auth")
    return manager


def test_secret_env_reads_the_variable_and_shows_only_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_PASSWORD", SECRET)
    options = AuthOptions.model_validate({"password": "PROBE_PASSWORD"})
    assert options.password.get_secret_value() == SECRET
    assert options.password.variable == "PROBE_PASSWORD"
    shown = [
        repr(options),
        str(options),
        str(options.password),
        repr(options.password),
        json.dumps(options.model_dump()),
        options.model_dump_json(),
    ]
    assert all(SECRET not in text for text in shown), shown
    assert options.model_dump()["password"] == "PROBE_PASSWORD"
    # A dumped config loads back to the same options.
    assert AuthOptions.model_validate_json(options.model_dump_json()) == options
    assert is_secret_field(AuthOptions, "password")
    assert options_masker(options).text(f"echo {SECRET}") == "echo ***"
    assert SECRET not in json.dumps(AuthOptions.model_json_schema())


def test_secret_env_cannot_be_pickled_into_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_PASSWORD", SECRET)
    secret = anyprobe.SecretEnv.from_environment("PROBE_PASSWORD")
    assert pickle.loads(pickle.dumps(secret)) == secret


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("PROBE_UNSET_VARIABLE", "environment variable PROBE_UNSET_VARIABLE is not set"),
        ("PROBE_EMPTY", "environment variable PROBE_EMPTY is empty"),
        ("1BAD", NOT_A_NAME),
        ("", NOT_A_NAME),
        ("A B", NOT_A_NAME),
    ],
)
def test_a_bad_secret_variable_fails_validation_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, error: str
) -> None:
    monkeypatch.delenv("PROBE_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("PROBE_EMPTY", "")
    with pytest.raises(ValueError, match="validation error") as info:
        AuthOptions.model_validate({"password": name})
    assert error in str(info.value)
    assert info.value.error_count() == 1  # type: ignore[attr-defined]


def test_a_secret_that_is_not_text_is_one_error() -> None:
    with pytest.raises(ValueError) as info:
        AuthOptions.model_validate({"password": 12})
    assert "must be the name of an environment variable, not int" in str(info.value)


@pytest.mark.anyio
async def test_a_secret_echoed_by_the_server_is_masked_everywhere(
    anyio_backend: str,
    auth_manager: PluginManager,
    anyprobe_line_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_PASSWORD", SECRET)
    monkeypatch.setenv("PROBE_WRONG", "not-the-password")
    server: LineServer = anyprobe_line_server(_echo_auth)
    good, bad = server.url("auth"), server.url("auth", "/wrong")
    record = await run_checks(
        auth_manager, [good], options={"password": "PROBE_PASSWORD"}, explain=True
    )
    result = record.result
    assert result.status is anyprobe.Status.OK
    assert result.summary == "server said +OK welcome, ***"
    assert result.metrics["reply"] == "+OK welcome, ***"
    trace = [e.message for e in result.trace]
    assert "server said +OK welcome, ***" in trace
    assert "sent 21 bytes: 'AUTH ***\\r\\n'" in trace
    assert all(SECRET not in line for line in trace)
    assert server.received[0] == f"AUTH {SECRET}"
    record = await run_checks(
        auth_manager, [bad], options={"password": "PROBE_WRONG"}, explain=True
    )
    result = record.result
    assert result.status is anyprobe.Status.CRITICAL
    assert result.summary == "AUTH refused: -ERR wrong password ***"
    assert result.error is not None and "not-the-password" not in result.error.message
    assert all("not-the-password" not in e.message for e in result.trace)


def _site_with_auth_plugin(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    modules = {"anyprobe_auth": AUTH_PLUGIN}
    make_distribution(site, "anyprobe_auth", {"auth": "anyprobe_auth"}, modules)
    return site


def test_cli_masks_the_secret_in_every_output(tmp_path: Path, anyprobe_line_server: Any) -> None:
    server: LineServer = anyprobe_line_server(_echo_auth)
    env = {"PYTHONPATH": str(_site_with_auth_plugin(tmp_path)), "PROBE_PASSWORD": SECRET}
    proc = run_anyprobe(
        "check", "--explain", "-r", "jsonl", "--set", "password=PROBE_PASSWORD",
        server.url("auth"), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    record = json.loads(proc.stdout.splitlines()[0])
    assert record["summary"] == "server said +OK welcome, ***"
    proc = run_anyprobe(
        "check", "--explain", "--set", "password=PROBE_PASSWORD", server.url("auth"), env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "server said +OK welcome, ***" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    assert server.received[0] == f"AUTH {SECRET}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "environment variable PROBE_PASSWORD is not set"),
        ({"PROBE_PASSWORD": ""}, "environment variable PROBE_PASSWORD is empty"),
    ],
)
def test_cli_refuses_an_unset_secret_variable_in_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    site = _site_with_auth_plugin(tmp_path)
    config = tmp_path / "checks.toml"
    config.write_text(
        '[[check]]\nname = "cache"\nurl = "auth://127.0.0.1:1"\npassword = "PROBE_PASSWORD"\n'
    )
    proc = run_anyprobe("run", str(config), env={"PYTHONPATH": str(site), **env})
    line = assert_one_clear_line(proc, message, "cache", "password")
    assert "PROBE_PASSWORD" in line


def test_read_each_reads_a_dict_of_variables_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_PASSWORD", SECRET)
    monkeypatch.delenv("PROBE_UNSET_VARIABLE", raising=False)
    secrets = anyprobe.SecretEnv.read_each({"X-Api-Key": "PROBE_PASSWORD"})
    assert secrets["X-Api-Key"].get_secret_value() == SECRET
    assert secrets["X-Api-Key"].variable == "PROBE_PASSWORD"
    with pytest.raises(ValueError) as info:
        anyprobe.SecretEnv.read_each({"X-Api-Key": "PROBE_UNSET_VARIABLE"})
    assert (
        str(info.value) == "header X-Api-Key: environment variable PROBE_UNSET_VARIABLE is not set"
    )
    assert anyprobe.SecretEnv.read_each("not a dict") == "not a dict"


class HeaderOptions(anyprobe.ProbeOptions):
    header_env: dict[str, anyprobe.SecretEnv] = Field(default_factory=dict)


def test_a_dict_of_secrets_is_masked_by_the_options_masker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_PASSWORD", SECRET)
    options = HeaderOptions.model_validate({"header_env": {"X-Api-Key": "PROBE_PASSWORD"}})
    assert is_secret_field(HeaderOptions, "header_env")
    assert options_masker(options).text(f"key={SECRET}") == "key=***"
    assert options.model_dump()["header_env"] == {"X-Api-Key": "PROBE_PASSWORD"}
