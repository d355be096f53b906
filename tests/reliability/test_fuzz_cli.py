"""Fuzzing the command line and the config file with hypothesis: 1,000 inputs.

Every generated command line (600) and config file (400) must give results
or one clear error line with exit status 3, never a traceback. The CLI runs
in-process (``anyprobe._cli.main`` with its ``SystemExit`` caught and stdout and
stderr captured), so each input costs milliseconds, on asyncio or trio as the
generated ``--backend`` says.

Targets only ever point at loopback (a refused port, a loopback DNS
responder) or at names under ``.invalid``, which cannot resolve: hosts come
from a fixed list, the random parts of a URL are confined to its path and
query (whose characters cannot move the authority), a ``dns://`` URL always
names its loopback server, and options that take an address (``proxy``) get
a loopback one. A trailing ``-t 0.5 --retries 0`` bounds every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyprobe._cli import main
from tests.servers.dns import DnsServer

pytestmark = pytest.mark.slow

COMMAND_LINES = 600
CONFIG_FILES = 400
HOSTS = ["127.0.0.1", "127.0.0.2", "[::1]", "localhost", "nothing.invalid", "a-b.c.invalid"]
SCHEMES = ["tcp", "tls", "http", "https", "ssh", "ftp", "TCP", "Http", ""]
SAFE_TEXT = st.text(
    alphabet="abcxyz019-._~!$'()*+,;= éß☃\t\\\"", min_size=0, max_size=12
)  # no '/', '?', '#', '@', ':' or '%': nothing that could move the host
OPTION_KEYS = [
    "warning_after", "critical_after", "verify", "ca_file", "server_name", "method",
    "headers", "body", "json_body", "follow_redirects", "max_redirects", "http2",
    "ip_family", "username", "password", "bearer_token", "bearer_token_env",
    "expect_status", "body_contains", "body_matches", "json_assertions", "max_body_bytes",
    "send", "expect", "expect_regex", "expect_timeout", "max_bytes", "starttls",
    "record_type", "transport", "expect_rcode", "expect_answers", "min_answers",
    "command", "expect_exit_status", "host_key_fingerprint", "agent", "verify_host_key",
    "timeout", "retries", "labels", "name", "url", "nonsense", "",
]  # fmt: skip
REPORTERS = ["table", "jsonl", "junit", "prometheus", "nagios", "csv", "markdown", "nope", ""]
VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True, allow_infinity=True),
    SAFE_TEXT,
    st.sampled_from(["[200]", "{a = 1}", "ipv6", "MX", "smtp", "GET", "2xx", "true", "1e9", "-1"]),
)


@st.composite
def targets(draw: st.DrawFn, ports: dict[str, int]) -> str:
    """A target URL whose host is from the fixed list (or a loopback DNS server)."""
    if draw(st.integers(0, 5)) == 0:
        name = draw(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True))
        record = draw(st.sampled_from(["", "?type=A", "?type=MX", "?type=NOPE", "?x=1"]))
        return f"dns://127.0.0.1:{ports['dns']}/{name}{record}"
    scheme = draw(st.sampled_from(SCHEMES))
    host = draw(st.sampled_from(HOSTS))
    port = draw(st.sampled_from([f":{ports['closed']}", f":{ports['closed']}", "", ":0", ":x"]))
    user = draw(st.sampled_from(["", "", "bob@", "bob:pw@"]))
    path = draw(SAFE_TEXT)
    query = draw(st.sampled_from(["", "?", "?a=b"]))
    separator = "://" if draw(st.integers(0, 9)) else draw(st.sampled_from([":/", "//", ":"]))
    return f"{scheme}{separator}{user}{host}{port}/{path}{query}"


def option_value(key: str, value: Any, ports: dict[str, int]) -> Any:
    if key == "proxy":  # an address: loopback only
        return f"http://127.0.0.1:{ports['closed']}"
    return value


@st.composite
def command_lines(draw: st.DrawFn, ports: dict[str, int], tmp: Path) -> list[str]:
    args: list[str] = []
    if draw(st.integers(0, 20)) == 0:
        args.append(draw(st.sampled_from(["-q", "-v", "--version", "--help", "-x"])))
    subcommand = draw(st.sampled_from(["check"] * 8 + ["plugins", "schema", "nope"]))
    args += ["--no-plugin-autoload", subcommand]
    for target in draw(st.lists(targets(ports), max_size=4)):
        args.append(target)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["set", "report", "flag", "input", "number"]))
        if kind == "set":
            key = draw(st.sampled_from([*OPTION_KEYS, "proxy"]))
            value = option_value(key, draw(VALUES), ports)
            text = value if isinstance(value, str) else json.dumps(value)
            args += ["--set", f"{key}={text}" if draw(st.integers(0, 9)) else key]
        elif kind == "report":
            name = draw(st.sampled_from(REPORTERS))
            dest = draw(st.sampled_from(["", f"={tmp}/out", f"={tmp}", f"={tmp}/no/dir/x", "="]))
            args += ["-r", f"{name}{dest}"]
        elif kind == "flag":
            args.append(draw(st.sampled_from(["--explain", "--progress", "--no-progress", "-q"])))
        elif kind == "input":
            lines = draw(st.lists(st.one_of(targets(ports), SAFE_TEXT), max_size=3))
            (tmp / "targets.txt").write_text("\n".join(lines))
            args += ["-i", str(tmp / draw(st.sampled_from(["targets.txt", "missing.txt"])))]
        else:
            option = draw(st.sampled_from(["-c", "--per-host", "-t", "--retries", "--shard"]))
            value = draw(st.sampled_from(["0", "1", "3", "100000", "-1", "x", "0.2", "1/2"]))
            args += [option, value]
    args += ["--backend", draw(st.sampled_from(["asyncio", "trio"]))]
    if subcommand == "check":
        args += ["-t", "0.5", "--retries", "0"]
    return args


def toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


@st.composite
def config_files(draw: st.DrawFn, ports: dict[str, int], tmp: Path) -> str:
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("[defaults]")
        for key in draw(
            st.lists(
                st.sampled_from(["timeout", "concurrency", "retries", "per_host", "nonsense"]),
                max_size=3,
            )
        ):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    for index in range(draw(st.integers(0, 3))):
        lines.append("[[check]]")
        if draw(st.integers(0, 9)):
            lines.append(f"name = {toml_value(draw(st.sampled_from([f'c{index}', 'same', ''])))}")
        if draw(st.integers(0, 9)):
            lines.append(f"url = {toml_value(draw(targets(ports)))}")
        for key in draw(st.lists(st.sampled_from([*OPTION_KEYS, "proxy"]), max_size=3)):
            if key and key not in ("name", "url"):
                value = option_value(key, draw(VALUES), ports)
                lines.append(f"{key} = {toml_value(value)}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[reporter]]")
        lines.append(f"type = {toml_value(draw(st.sampled_from(REPORTERS)))}")
        if draw(st.booleans()):
            lines.append(f"path = {toml_value(str(tmp / draw(st.sampled_from(['o', 'n/o']))))}")
    text = "\n".join(lines) + "\n"
    damage = draw(st.integers(0, 9))
    if damage == 0:
        position = draw(st.integers(0, len(text)))
        text = (
            text[:position]
            + draw(st.sampled_from(["[", "=", '"', "\x00", "]]", "\n="]))
            + text[position:]
        )
    return text


@contextlib.contextmanager
def fresh_logging() -> Iterator[None]:
    """Let each in-process run's logging.basicConfig bind to the captured stderr."""
    saved = logging.root.handlers[:]
    logging.root.handlers = []
    try:
        yield
    finally:
        logging.root.handlers = saved


def run_cli(args: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with fresh_logging(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(args)
        except SystemExit as exit:
            code = exit.code
        else:
            code = 0
    return (code if isinstance(code, int) else 1), stdout.getvalue(), stderr.getvalue()


def assert_results_or_one_clear_error(args: list[str], code: int, stdout: str, stderr: str) -> None:
    where = f"anyprobe {' '.join(args)}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stderr, where
    assert code in (0, 1, 2, 3), where
    if code == 3 and not stdout.strip():
        lines = stderr.strip().splitlines()
        assert lines, where
        assert all(line.startswith("anyprobe: ") for line in lines), where
        # One line for the error; a reporter that failed (each) or a warning adds its own.
        extra = ("anyprobe: reporter ", "anyprobe: warning", "anyprobe: concurrency ")
        errors = [line for line in lines if not line.startswith(extra)]
        assert len(errors) <= 1, where


@pytest.fixture
def ports(closed_port: int, dns_server: DnsServer) -> dict[str, int]:
    return {"closed": closed_port, "dns": dns_server.port}


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def test_generated_command_lines_give_results_or_one_clear_error(
    ports: dict[str, int], tmp_path: Path
) -> None:
    ran = 0

    @fuzz_settings(COMMAND_LINES)
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        nonlocal ran
        args = data.draw(command_lines(ports, tmp_path))
        # Every host is from the fixed list, a loopback DNS server, or .invalid.
        code, stdout, stderr = run_cli(args)
        assert_results_or_one_clear_error(args, code, stdout, stderr)
        ran += 1

    fuzz()
    assert ran >= COMMAND_LINES


def test_generated_config_files_give_results_or_one_clear_error(
    ports: dict[str, int], tmp_path: Path
) -> None:
    ran = 0
    config = tmp_path / "checks.toml"

    @fuzz_settings(CONFIG_FILES)
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        nonlocal ran
        config.write_text(data.draw(config_files(ports, tmp_path)), encoding="utf-8")
        backend = data.draw(st.sampled_from(["asyncio", "trio"]))
        args = ["--no-plugin-autoload", "run", str(config), "--backend", backend,
                "-t", "0.5", "--retries", "0"]  # fmt: skip
        code, stdout, stderr = run_cli(args)
        assert_results_or_one_clear_error([*args, "\n" + config.read_text()], code, stdout, stderr)
        ran += 1

    fuzz()
    assert ran >= CONFIG_FILES
