"""Every hook is documented and tested (as datasette checks its own hooks).

A hook in ``anyprobe.hookspecs`` needs a docstring that names each of its
arguments, a section of its own in docs/hooks.md, and a test of its own: its
name must appear in a test module. The tests of the two hooks that no other
module tests directly are at the end of this one.
"""

from __future__ import annotations

import inspect
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import anyprobe
from anyprobe import hookspecs
from anyprobe._demo import compare, start_demo_services
from anyprobe.testing import RunRecord, run_checks

ROOT = Path(__file__).resolve().parent.parent
HOOKS_PAGE = ROOT / "docs" / "hooks.md"


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "anyprobe_spec")
    }


def test_the_hookspecs_are_found() -> None:
    specs = hookspec_functions()
    assert len(specs) >= 5
    assert all(name.startswith("anyprobe_") for name in specs)
    strays = [
        name
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("anyprobe_") and name not in specs
    ]
    assert not strays, f"functions named like hooks but not marked @hookspec: {strays}"


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_hook_has_a_docstring_naming_each_argument(name: str) -> None:
    function = hookspec_functions()[name]
    doc = inspect.getdoc(function) or ""
    assert len(doc.split()) >= 12, f"{name}: say when it is called and what it gets"
    for argument in inspect.signature(function).parameters:
        assert re.search(rf"\b{argument}\b", doc), f"{name}: the docstring never names {argument}"


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_hook_has_its_section_in_the_hook_reference(name: str) -> None:
    page = HOOKS_PAGE.read_text(encoding="utf-8")
    assert f"\n## {name}\n" in page, f"docs/hooks.md has no '## {name}' section"
    assert f"<!-- generated: hook {name} -->" in page, f"docs/hooks.md does not show {name}"


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_hook_has_a_test_of_its_own(name: str) -> None:
    tests = [p for p in (ROOT / "tests").glob("test_*.py")]
    using = [p.name for p in tests if name in p.read_text(encoding="utf-8")]
    assert using, f"no test module uses {name}: add a test that implements it"


# -- tests of the hooks that have no other test module -------------------------------


class LinesReporter(anyprobe.Reporter[anyprobe.ReporterOptions]):
    """Keeps one line per result, to show which results it was given."""

    name = "lines"
    seen: list[str] = []

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        async for result in results:
            type(self).seen.append(f"{result.name} {result.status.value}")


class Nameless(anyprobe.Reporter[anyprobe.ReporterOptions]):
    pass


def reporter_plugin(*reporter_types: type[Any]) -> type:
    @anyprobe.hookimpl
    def anyprobe_register_reporters(register: Callable[[type[Any]], None]) -> None:
        for reporter_type in reporter_types:
            register(reporter_type)

    # A class: pluggy keeps plugins in sets, and a SimpleNamespace cannot be hashed.
    return type("ReporterPlugin", (), {"anyprobe_register_reporters": anyprobe_register_reporters})


@pytest.mark.anyio
async def test_a_registered_reporter_is_selected_by_its_name(
    anyprobe_manager: anyprobe.PluginManager,
    anyprobe_run: Callable[..., Awaitable[RunRecord]],
    anyprobe_line_server: Callable[..., Any],
) -> None:
    anyprobe_manager.register(reporter_plugin(LinesReporter), name="lines-plugin")
    assert anyprobe_manager.reporters["lines"] is LinesReporter
    info = next(p for p in anyprobe_manager.plugins if p.name == "lines-plugin")
    assert info.reporters == ["lines"]
    LinesReporter.seen = []
    server = anyprobe_line_server()
    record = await anyprobe_run([server.url("tcp")], reporters=["lines"])
    assert LinesReporter.seen == [f"{record.result.name} ok"]


def test_a_reporter_without_a_name_or_with_a_taken_one_breaks_its_plugin(
    anyprobe_manager: anyprobe.PluginManager,
) -> None:
    anyprobe_manager.register(reporter_plugin(Nameless), name="nameless")
    anyprobe_manager.register(reporter_plugin(LinesReporter, LinesReporter), name="twice")
    broken = {info.name: info.error for info in anyprobe_manager.broken}
    assert "reporter Nameless has no name" in str(broken["nameless"])
    assert "reporter name 'lines' is already registered" in str(broken["twice"])
    assert "table" in anyprobe_manager.reporters  # the others are untouched


@asynccontextmanager
async def greeting_service() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A demo service: a TCP listener on loopback, and one port nothing listens on."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]

    async def serve() -> None:
        await listener.serve(lambda stream: stream.aclose())

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(serve)
        yield [
            anyprobe.DemoCheck("greeting: open", f"tcp://127.0.0.1:{port}", anyprobe.Status.OK),
            anyprobe.DemoCheck(
                "greeting: closed", f"tcp://127.0.0.1:{closed}", anyprobe.Status.CRITICAL
            ),
        ]
        tg.cancel_scope.cancel()


@anyprobe.hookimpl
def anyprobe_demo_services(register: Callable[[Callable[..., Any]], None]) -> None:
    register(greeting_service)


@pytest.mark.anyio
async def test_demo_services_are_started_checked_and_stopped(
    anyprobe_manager: anyprobe.PluginManager,
) -> None:
    anyprobe_manager.register(
        type("DemoPlugin", (), {"anyprobe_demo_services": anyprobe_demo_services})
    )
    assert greeting_service in anyprobe_manager.demo_services
    async with AsyncExitStack() as stack:
        targets, expected = await start_demo_services(anyprobe_manager, stack)
        ours = [t for t in targets if t.name.startswith("greeting:")]
        record = await run_checks(anyprobe_manager, ours)
        port = ours[0].port
    assert compare(record.results, {k: v for k, v in expected.items() if "greeting" in k}) == []
    assert record["greeting: open"].labels == {"demo": "true"}
    # The service stopped with the demo.
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port or 0)
