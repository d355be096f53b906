"""anyprobe.testing, the pytest plugin for plugin authors: its fixtures, helpers
and servers, used here as an author would use them, and a plugin author's test
suite run in a pytest of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyprobe
from anyprobe import Status
from anyprobe.testing import (
    CLOSE,
    HttpReply,
    HttpRequest,
    HttpServer,
    LineServer,
    RunRecord,
    feed_reporter,
    make_result,
    run_cli,
    running,
)
from tests import probes
from tests.servers.http import server_context

pytestmark = pytest.mark.anyio

CheckFn = Callable[..., Awaitable[anyprobe.Result]]
RunFn = Callable[..., Awaitable[RunRecord]]


async def test_line_server_answers_each_line_it_is_given(
    anyprobe_line_server: Callable[..., LineServer], anyprobe_check: CheckFn
) -> None:
    server = anyprobe_line_server({"PING": "+PONG"}, greeting="hello")
    result = await anyprobe_check(
        server.url("tcp"), options={"send": r"PING\r\n", "expect": "+PONG"}
    )
    assert result.status is Status.OK, result.summary
    assert server.received == ["PING"]
    assert server.connections == 1


async def test_line_server_that_stays_silent_makes_the_check_time_out(
    anyprobe_line_server: Callable[..., LineServer], anyprobe_check: CheckFn
) -> None:
    server = anyprobe_line_server({})
    result = await anyprobe_check(
        server.url("tcp"),
        options={"send": r"PING\n", "expect": "PONG", "expect_timeout": 0.2},
    )
    assert result.status is Status.CRITICAL
    assert server.received == ["PING"]


async def test_line_server_handler_can_be_async_and_hang_up(
    anyprobe_line_server: Callable[..., LineServer], anyprobe_check: CheckFn
) -> None:
    async def handler(line: str) -> str | list[str]:
        await anyio.lowlevel.checkpoint()
        return CLOSE if line == "BYE" else ["one", "two"]

    server = anyprobe_line_server(handler)
    both = await anyprobe_check(server.url("tcp"), options={"send": r"X\n", "expect": "two"})
    assert both.status is Status.OK, both.summary
    hung_up = await anyprobe_check(server.url("tcp"), options={"send": r"BYE\n", "expect": "one"})
    assert hung_up.status is Status.CRITICAL
    assert server.received == ["X", "BYE"]


async def test_http_server_serves_routes_and_records_requests(
    anyprobe_http_server: Callable[..., HttpServer], anyprobe_run: RunFn
) -> None:
    async def created(request: HttpRequest) -> HttpReply:
        return HttpReply(201, f"made by {request.method}", headers={"X-Test": "yes"})

    server = anyprobe_http_server({"/health": HttpReply(200, "UP"), "/made": created})
    record = await anyprobe_run(
        [server.url("/health?full=1"), server.url("/made"), server.url("/missing")],
        options={"expect_status": [200, 201]},
    )
    statuses = record.statuses
    assert statuses[server.url("/health?full=1")] is Status.OK
    assert statuses[server.url("/made")] is Status.OK
    assert statuses[server.url("/missing")] is Status.CRITICAL
    assert sorted(r.path for r in server.requests) == ["/health", "/made", "/missing"]
    health = next(r for r in server.requests if r.path == "/health")
    assert health.method == "GET" and health.query == "full=1"
    assert health.header("Host") == f"127.0.0.1:{server.port}"


async def test_run_gives_a_reporter_every_result_the_collector_saw(
    anyprobe_manager: anyprobe.PluginManager, anyprobe_run: RunFn, tmp_path: Path
) -> None:
    anyprobe_manager.register(probes)
    out = tmp_path / "results.jsonl"
    record = await anyprobe_run(
        ["test://ok-1", "test://fail", "test://raise"],
        reporters=[("jsonl", {"path": str(out)})],
    )
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["name"] for r in written] == [r.name for r in record.results]
    assert record.statuses == {
        "test://ok-1": Status.OK,
        "test://fail": Status.CRITICAL,
        "test://raise": Status.UNKNOWN,
    }
    assert record.summary.total == 3 and record.summary.worst is Status.UNKNOWN
    assert record["test://fail"].summary == "connection refused"


async def test_run_fails_the_test_when_a_reporter_fails(
    anyprobe_manager: anyprobe.PluginManager, anyprobe_run: RunFn
) -> None:
    anyprobe_manager.register(probes)

    class Broken(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "broken"

        async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
            raise RuntimeError("disk full")

    broken = Broken(anyprobe.ReporterOptions())
    with pytest.raises(AssertionError, match="reporter broken failed: RuntimeError: disk full"):
        await anyprobe_run(["test://ok"], reporters=[broken])
    record = await anyprobe_run(["test://ok"], reporters=[broken], allow_reporter_failures=True)
    assert record.result.status is Status.OK
    assert record.summary.reporter_failures == ("reporter broken failed: RuntimeError: disk full",)


async def test_feed_reporter_passes_results_and_the_summary_in_order(
    anyprobe_manager: anyprobe.PluginManager, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    reporter = anyprobe_manager.reporters["jsonl"](anyprobe.ReporterOptions(path=str(out)))
    results = [make_result(f"c{i}", status) for i, status in enumerate(Status)]
    summary = await feed_reporter(reporter, results, total=6, interrupted="SIGINT")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in lines] == [
        ("c0", "ok"),
        ("c1", "warning"),
        ("c2", "critical"),
        ("c3", "unknown"),
    ]
    assert lines[2]["error"]["type"] == "CheckFailed"
    assert summary.not_finished == 2 and summary.interrupted == "SIGINT"


async def test_feed_reporter_reports_a_reporter_that_raises() -> None:
    class Raising(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "raising"

        async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
            async for _ in results:
                raise ValueError("cannot format")

    reporter = Raising(anyprobe.ReporterOptions())
    with pytest.raises(AssertionError, match="ValueError: cannot format"):
        await feed_reporter(reporter, [make_result()])
    summary = await feed_reporter(reporter, [make_result()], allow_failure=True)
    assert summary.reporter_failures == ("reporter raising failed: ValueError: cannot format",)


def test_make_result_fills_an_error_for_failed_statuses() -> None:
    assert make_result("a", "critical", "refused").error == anyprobe.ErrorInfo(
        "CheckFailed", "refused", None
    )
    assert make_result("a", Status.WARNING).error is None
    assert make_result("a").as_dict()["status"] == "ok"


def test_servers_serve_synchronous_tests_too(
    anyprobe_line_server: Callable[..., LineServer],
) -> None:
    server = anyprobe_line_server({"PING": "PONG"})
    proc = run_cli(
        "check",
        "-r",
        "jsonl",
        "--set",
        r"send=PING\n",
        "--set",
        "expect=PONG",
        server.url("tcp"),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"


AUTHOR_PLUGIN = '''
    """A plugin as an author would write it: a probe answering from the URL's host."""
    from urllib.parse import SplitResult

    import anyio
    import anyprobe


    class GreetProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
        name = "greet"
        schemes = ("greet",)
        default_ports = {"greet": 7}

        async def check(self, target, options, ctx):
            async with await anyio.connect_tcp(target.host, target.port) as stream:
                await stream.send(b"HELLO\\r\\n")
                reply = (await stream.receive()).decode().strip()
            if reply != "WELCOME":
                raise anyprobe.CheckFailed(f"expected WELCOME, got {reply!r}")
            return anyprobe.Outcome.ok(f"greeted on {anyio.get_current_task().name and 'a task'}")


    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        register(GreetProbe)
'''

AUTHOR_CONFTEST = """
    import pytest
    import author_plugin
    from anyprobe.testing import BACKENDS


    @pytest.fixture(params=BACKENDS)
    def anyio_backend(request):
        return request.param


    @pytest.fixture
    def anyprobe_plugins():
        return [author_plugin]
"""

AUTHOR_TESTS = """
    import pytest
    import sniffio

    pytestmark = pytest.mark.anyio
    seen = set()


    async def test_welcome_is_ok(anyprobe_check, anyprobe_line_server):
        server = anyprobe_line_server({"HELLO": "WELCOME"})
        result = await anyprobe_check(server.url("greet"))
        assert result.status.value == "ok", result.summary
        seen.add(sniffio.current_async_library())


    async def test_wrong_reply_is_critical(anyprobe_check, anyprobe_line_server):
        server = anyprobe_line_server({"HELLO": "GO AWAY"})
        result = await anyprobe_check(server.url("greet"))
        assert result.summary == "expected WELCOME, got 'GO AWAY'"


    def test_ran_on_both_backends():
        assert seen == {"asyncio", "trio"}


    async def test_handler_that_raises_fails_the_test(anyprobe_check, anyprobe_line_server):
        def handler(line):
            raise KeyError(line)

        server = anyprobe_line_server(handler)
        await anyprobe_check(server.url("greet"), timeout=0.5)


    @pytest.mark.parametrize("anyprobe_plugins", [["not-installed"]])
    def test_missing_entry_point_is_named(anyprobe_manager):
        pass
"""


@pytest.mark.slow
def test_an_authors_suite_runs_on_both_backends_with_the_kit(tmp_path: Path) -> None:
    (tmp_path / "author_plugin.py").write_text(textwrap.dedent(AUTHOR_PLUGIN))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(AUTHOR_CONFTEST))
    (tmp_path / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout
    # The raising handler's test passes, then errors at teardown on each backend;
    # the missing entry point errors at setup with a message that says what to do.
    assert "7 passed, 3 errors" in out, out
    assert "no entry point named not-installed in the group 'anyprobe'" in out, out
    assert "a test server's handler raised KeyError: 'HELLO'" in out, out


async def test_http_server_answers_garbage_with_400_and_keeps_serving(
    anyprobe_http_server: Callable[..., HttpServer], anyprobe_check: CheckFn
) -> None:
    server = anyprobe_http_server({"/": HttpReply(200, "UP")})
    garbage = await anyprobe_check(
        f"tcp://127.0.0.1:{server.port}",
        options={"send": r"version\r\n\r\n", "expect": "400 Bad Request"},
    )
    assert garbage.status is Status.OK, garbage.summary
    after = await anyprobe_check(server.url("/"))
    assert after.status is Status.OK, after.summary
    assert [r.path for r in server.requests] == ["/"]


async def _exchange(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` on a connection of its own; everything the server answered."""
    answer = b""
    async with await anyio.connect_tcp(host, port) as stream:
        await stream.send(request)
        with anyio.fail_after(5):
            while True:
                try:
                    answer += await stream.receive()
                except anyio.EndOfStream:
                    return answer


async def test_http_server_default_route_sees_the_request_as_sent(
    anyprobe_http_server: Callable[..., HttpServer],
) -> None:
    def echo(request: HttpRequest) -> HttpReply:
        names = ",".join(name for name, _ in request.raw_headers)
        return HttpReply(202, f"{request.target} {names}", content_type=None)

    server = anyprobe_http_server({"/only": HttpReply(200, "only")}, default=echo)
    answer = await _exchange(
        server.port,
        b"POST /hook?to=http://x/y HTTP/1.1\r\nHost: h\r\nX-Mixed-Case: 1\r\n"
        b'Content-Length: 9\r\n\r\n{"a": 1}\n',
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202 ")
    assert b"content-type" not in head.lower()
    assert body == b"/hook?to=http://x/y Host,X-Mixed-Case,Content-Length"
    [request] = server.requests
    assert (request.path, request.query) == ("/hook", "to=http://x/y")
    assert request.header("x-mixed-case") == "1" and request.json() == {"a": 1}
    assert (await _exchange(server.port, b"GET /only HTTP/1.1\r\n\r\n")).endswith(b"\r\nonly")


async def test_http_server_on_another_loopback_address_signals_replies_sent(
    anyprobe_http_server: Callable[..., HttpServer], anyprobe_check: CheckFn
) -> None:
    server = anyprobe_http_server({"/big": HttpReply(200, b"x" * 1_000_000)}, host="127.0.0.2")
    assert server.url("/big") == f"http://127.0.0.2:{server.port}/big"
    assert server.sent == []
    assert not await anyio.to_thread.run_sync(server.wait_sent, "/big", 0.01)
    result = await anyprobe_check(server.url("/big"))
    assert result.status is Status.OK, result.summary
    assert result.metrics["body_bytes"] == 1_000_000
    assert await anyio.to_thread.run_sync(server.wait_sent, "/big")
    assert [r.path for r in server.sent] == ["/big"]


async def test_http_server_speaks_https_with_an_ssl_context(
    anyprobe_http_server: Callable[..., HttpServer],
    anyprobe_check: CheckFn,
    http_ca: Any,
    http_ca_file: str,
) -> None:
    server = anyprobe_http_server(
        {"/up": HttpReply(200, "UP")}, ssl_context=server_context(http_ca, "127.0.0.1")
    )
    assert server.url("/up") == f"https://127.0.0.1:{server.port}/up"
    result = await anyprobe_check(server.url("/up"), options={"ca_file": http_ca_file})
    assert result.status is Status.OK, result.summary
    assert "cert_expiry_days" in result.metrics
    assert [r.path for r in server.requests] == ["/up"]


def test_running_serves_outside_the_fixtures_and_reports_handler_errors() -> None:
    def broken(request: HttpRequest) -> HttpReply:
        raise KeyError(request.path)

    with running(HttpServer({"/up": HttpReply(200, "UP")}), backend="trio") as server:
        assert anyio.run(_exchange, server.port, b"GET /up HTTP/1.1\r\n\r\n").endswith(b"UP")
    failing = pytest.raises(AssertionError, match="handler raised KeyError: '/boom'")
    with failing, running(HttpServer(default=broken)) as server:
        assert anyio.run(_exchange, server.port, b"GET /boom HTTP/1.1\r\n\r\n") == b""


def test_http_server_keeps_serving_after_a_reply_it_cannot_send() -> None:
    def wrong(request: HttpRequest) -> HttpReply:
        return "not a reply"  # type: ignore[return-value]

    routes = {"/wrong": wrong, "/up": HttpReply(200, "UP")}
    failing = pytest.raises(AssertionError, match="handler raised AttributeError")
    with failing, running(HttpServer(routes)) as server:
        assert anyio.run(_exchange, server.port, b"GET /wrong HTTP/1.1\r\n\r\n") == b""
        assert anyio.run(_exchange, server.port, b"GET /up HTTP/1.1\r\n\r\n").endswith(b"UP")
