"""User patterns on RE2 (anyprobe.compile_pattern), work off the loop
(anyprobe.off_loop), and probes' dependencies loaded before the run."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult

import anyio
import anyio.lowlevel
import pytest

import anyprobe
from anyprobe import PatternError, PluginManager, Status, compile_pattern
from tests.cli import anyprobe as run_anyprobe
from tests.cli import assert_one_clear_line
from tests.servers.bodies import NOISE_BODY, SLOW_PATTERN, BodyServer

# -- the dialect ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences (\\1) are not supported"),
        (r"(?P<x>a)(?P=x)", "backreferences ((?P=name)) are not supported"),
        (r"a(?=b)", "lookahead (?=...) is not supported"),
        (r"a(?!b)", "lookahead (?!...) is not supported"),
        (r"(?<=a)b", "lookbehind (?<=...) is not supported"),
        (r"(?<!a)b", "lookbehind (?<!...) is not supported"),
        (r"a++", "possessive repetitions"),
        (r"a\Z", "use \\z for the end of the text"),
        (r"(?x) a", "the verbose flag (?x) is not supported"),
        (r"a{1001}", "a repetition count"),
        (r"(a{100}){100}", "a repetition count"),
        (r"\pL{1000}" * 3, "over RE2's size limit"),
        (r"(", "not a regular expression: missing )"),
        ("\ud800", "not a regular expression"),
    ],
)
def test_what_re2_refuses_is_one_line_saying_why(pattern: str, why: str) -> None:
    with pytest.raises(PatternError) as error:
        compile_pattern(pattern)
    message = str(error.value)
    assert why in message
    assert "\n" not in message


def test_a_refused_pattern_logs_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PatternError):
        compile_pattern(r"(b)\1")
    assert capfd.readouterr().err == ""


def test_catastrophic_for_backtracking_is_fine_for_re2() -> None:
    pattern = compile_pattern(r"(x+x+)+y")
    assert pattern.search("x" * 100_000) is None


def test_dollar_matches_before_a_final_newline_as_in_python() -> None:
    pattern = compile_pattern(r"^all good$")
    assert pattern.search("all good\n") is not None
    assert pattern.search("all good") is not None
    assert pattern.search("all good\nand more") is None
    assert compile_pattern(r"(?m)^good$").search("all\ngood\nmore") is not None


def test_an_empty_match_is_a_match() -> None:
    found = compile_pattern("x*").search("abc")
    assert found is not None
    assert (found.text, found.start, found.end) == ("", 0, 0)


def test_str_patterns_search_characters() -> None:
    found = compile_pattern("caf.").search("un café noir")
    assert found is not None
    assert (found.text, found.start, found.end) == ("café", 3, 7)
    assert compile_pattern("(?i)CAFÉ").search("café") is not None
    with pytest.raises(TypeError):
        compile_pattern("x").search(b"x")  # type: ignore[call-overload]


def test_binary_patterns_search_bytes_one_character_a_byte() -> None:
    pattern = compile_pattern("^220 .$", binary=True, multiline=True)
    assert pattern.search(b"hello\n220 \xff\n") is not None
    assert compile_pattern("caf\u00e9", binary=True).search("café".encode()) is not None
    assert compile_pattern(r"\x00.\x01", binary=True).search(b"\x00\x80\x01") is not None
    with pytest.raises(TypeError):
        compile_pattern("x", binary=True).search("x")  # type: ignore[call-overload]


def test_check_regex_is_what_plugins_validate_with() -> None:
    assert anyprobe.check_regex(None) is None
    assert anyprobe.check_regex("^SSH-2") == "^SSH-2"
    with pytest.raises(ValueError, match="lookahead"):
        anyprobe.check_regex("(?=x)")


# -- off the loop --------------------------------------------------------------------


@pytest.mark.anyio
async def test_small_work_runs_on_the_loop_and_large_work_in_a_thread() -> None:
    here = threading.get_ident()
    small = await anyprobe.off_loop(threading.get_ident, work=anyprobe.OFF_LOOP_BYTES)
    large = await anyprobe.off_loop(threading.get_ident, work=anyprobe.OFF_LOOP_BYTES + 1)
    assert small == here
    assert large != here


@pytest.mark.anyio
async def test_an_error_in_the_thread_reaches_the_caller() -> None:
    with pytest.raises(ZeroDivisionError):
        await anyprobe.off_loop(lambda: 1 // 0, work=anyprobe.OFF_LOOP_BYTES + 1)


@pytest.mark.anyio
async def test_a_cancelled_caller_returns_at_once_and_abandons_the_thread() -> None:
    release = threading.Event()
    with anyio.move_on_after(0.1) as scope:
        await anyprobe.off_loop(release.wait, work=anyprobe.OFF_LOOP_BYTES + 1)
    assert scope.cancelled_caught
    release.set()  # the thread ends; its result is dropped


@pytest.mark.anyio
async def test_a_long_search_runs_off_the_loop() -> None:
    # Seconds of RE2's slow path: random text defeats its fast automaton.
    pattern = compile_pattern(SLOW_PATTERN)
    text = NOISE_BODY[:20_000].decode()
    assert pattern.work(len(text)) > anyprobe.OFF_LOOP_BYTES
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.lowlevel.checkpoint()
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        assert await pattern.search_off_loop(text) is None
        tg.cancel_scope.cancel()
    assert ticks > 0  # the loop ran other tasks while the search went on


# -- through the probes ---------------------------------------------------------------


@pytest.fixture
def probes() -> PluginManager:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    return manager


async def one(manager: PluginManager, url: str, **options: Any) -> anyprobe.Result:
    [result] = await anyprobe.check([url], manager=manager, options=options, timeout=30)
    return result


@pytest.mark.anyio
async def test_invalid_utf8_in_a_body_is_searched_as_replacement_characters(
    probes: PluginManager, body_server: BodyServer
) -> None:
    url = body_server.url("/latin1")
    assert (await one(probes, url, body_matches="caf. ok")).status is Status.OK
    assert (await one(probes, url, body_matches="caf\ufffd ok")).status is Status.OK
    result = await one(probes, url, body_not_matches="caf.")
    assert result.status is Status.CRITICAL
    assert result.summary == "HTTP 200: body matches 'caf.' ('caf\ufffd')"


@pytest.mark.anyio
async def test_a_large_json_body_is_judged_off_the_loop(
    probes: PluginManager, body_server: BodyServer
) -> None:
    url = body_server.url("/big-json")
    ok = await one(probes, url, json_assertions=["status == 'UP'", "length(items) > `1000`"])
    assert ok.status is Status.OK, ok.summary
    bad = await one(probes, url, json_assertions=["status == 'DOWN'"])
    assert bad.status is Status.CRITICAL
    assert (
        bad.summary
        == "HTTP 200: JSON assertion \"status == 'DOWN'\" is not true (status is '\"UP\"')"
    )


@pytest.mark.anyio
async def test_a_large_body_is_searched_with_every_assertion(
    probes: PluginManager, body_server: BodyServer
) -> None:
    url = body_server.url("/big")
    result = await one(
        probes,
        url,
        body_contains="nothing to see",
        body_matches=[r"INFO all is well", r"^2026-12-03T"],
        body_not_matches="ERROR|FATAL",
    )
    assert result.status is Status.OK, result.summary
    found = await one(probes, url, body_not_matches=r"see\n2026")
    assert found.summary == "HTTP 200: body matches 'see\\\\n2026' ('see\\n2026')"


# -- a refused pattern is bad input, before the run ------------------------------------


@pytest.mark.parametrize(
    ("url", "option", "why"),
    [
        ("http://127.0.0.1:1/", "body_matches=(a)\\1", "backreferences"),
        ("http://127.0.0.1:1/", "body_not_matches=x(?=y)", "lookahead"),
        ("tcp://127.0.0.1:1", "expect_regex=(?<=a)b", "lookbehind"),
        ("dns://127.0.0.1:1/example.com", "answers_match=a++", "possessive"),
        ("dns://127.0.0.1:1/example.com", "any_answer_matches=a{2000}", "repetition count"),
        ("ssh://127.0.0.1:1", "expect_version=OpenSSH\\Z", "\\z"),
    ],
)
def test_refused_pattern_on_the_command_line_is_one_line(url: str, option: str, why: str) -> None:
    proc = run_anyprobe("check", url, "--set", option)
    field = option.split("=", 1)[0]
    assert_one_clear_line(proc, f"field '{field}'", why)


def test_refused_pattern_in_a_config_file_names_file_check_and_field(tmp_path: Path) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(
        '[[check]]\nname = "api"\nurl = "http://127.0.0.1:1/"\n'
        "expect_headers = { Content-Type = '(json)\\1' }\n"
    )
    line = assert_one_clear_line(run_anyprobe("run", str(config)), "checks.toml", "api")
    assert "expect_headers" in line
    assert "header Content-Type: backreferences" in line


# -- probes' dependencies, before the run ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_no_check_imports_a_module_on_the_loop(body_server: BodyServer, backend: str) -> None:
    closed = free_port()
    spec = [
        [body_server.url("/small"), {"body_matches": "well"}],
        [body_server.url("/big-json"), {"json_assertions": ["status == 'UP'"]}],
        [f"https://127.0.0.1:{closed}/", {"http2": True}],
        [f"tcp://127.0.0.1:{closed}", {}],
        [f"tls://127.0.0.1:{closed}", {}],
        [f"ssh://127.0.0.1:{closed}", {}],
        [f"ssh://127.0.0.1:{free_port()}", {}],
        [f"dns://127.0.0.1:{closed}/example.com?type=MX", {"transport": "tcp"}],
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.imports_during_run", backend, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["statuses"]) == len(spec)
    assert report["statuses"][body_server.url("/small")] == "ok"
    assert report["imported"] == []


#: Runs the CLI with ``BLOCKED`` (comma-separated top-level names) unimportable,
#: as if those packages were not installed.
BLOCKING_CLI = """
import os, sys
from importlib.abc import MetaPathFinder

class Blocker(MetaPathFinder):
    blocked = set(os.environ["BLOCKED"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
from anyprobe._cli import main
sys.argv[0] = "anyprobe"
main()
"""


def blocked_cli(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "BLOCKED": blocked, "COLUMNS": "200"},
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http2_without_h2_is_one_line_naming_the_extra(backend: str) -> None:
    proc = blocked_cli(
        "h2", "check", "--backend", backend, f"https://127.0.0.1:{free_port()}/",
        "--set", "http2=true",
    )  # fmt: skip
    assert_one_clear_line(proc, "http2 = true needs h2", "pip install 'anyprobe[http2]'")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ssh_without_asyncssh_is_one_line_naming_the_extra(backend: str) -> None:
    proc = blocked_cli("asyncssh", "check", "--backend", backend, f"ssh://127.0.0.1:{free_port()}")
    assert_one_clear_line(proc, "ssh:// checks need", "pip install 'anyprobe[ssh]'")


def test_a_run_without_the_package_it_does_not_need_runs(tmp_path: Path) -> None:
    # Without asyncssh, the run of an http check goes on (nothing missing for it).
    proc = blocked_cli("asyncssh,h2", "check", "-r", "jsonl", f"http://127.0.0.1:{free_port()}/")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["status"] == "critical"


def test_missing_dependency_in_a_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(f'[[check]]\nname = "box"\nurl = "ssh://127.0.0.1:{free_port()}"\n')
    proc = blocked_cli("asyncssh", "run", str(config))
    assert_one_clear_line(proc, "pip install 'anyprobe[ssh]'")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_module_without_its_package_is_one_line_before_listening(
    tmp_path: Path, backend: str
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.h2]\nprobe = "http"\nscheme = "https"\nhttp2 = true\n')
    proc = blocked_cli(
        "h2", "serve", str(config), "--backend", backend, "--listen", "127.0.0.1:0"
    )  # fmt: skip
    assert_one_clear_line(proc, "http2 = true needs h2", "pip install 'anyprobe[http2]'")


# -- the watchdog names where a probe blocked ------------------------------------------


class InlineSearchProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """Searches a long text with a slow pattern on the loop: what off_loop avoids."""

    name = "inline-search"
    schemes = ("inline",)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        pattern = compile_pattern(r"(\w+\s*){1000}z")
        pattern.search("ab ab\n" * 3000)  # blocking on purpose (about two seconds)
        return anyprobe.Outcome.ok("searched")


@anyprobe.hookimpl(specname="anyprobe_register_probes")
def _register(register: Any) -> None:
    register(InlineSearchProbe)


@pytest.fixture
def inline_probe(probes: PluginManager) -> Iterator[PluginManager]:
    probes.register(sys.modules[__name__], name="inline-search-test")
    yield probes


@pytest.mark.anyio
async def test_watchdog_names_the_probes_line_and_the_library_it_is_in(
    inline_probe: PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anyprobe")
    await anyprobe.check(["inline://x"], manager=inline_probe, timeout=30, watchdog=True)
    warnings = [
        r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()
    ]
    assert warnings, "the watchdog said nothing"
    [warning] = warnings
    assert "check inline://x (probe inline-search)" in warning
    assert "test_patterns.py:" in warning and "in check" in warning
    assert "(in " in warning and "re2" in warning
