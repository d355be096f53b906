"""Mistakes an embedding program makes, and what the call does about them:
each raises at the call with one line, none is silently ignored, and the
first call does not stall the caller's event loop with imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections import Counter
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

import anyprobe
from anyprobe import PluginManager
from tests import probes

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    return manager


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"explain": "yes"}, "explain must be True or False, got str: 'yes'"),
        ({"watchdog": "no"}, "watchdog must be True or False, got str: 'no'"),
        ({"raise_on_reporter_failure": 1}, "raise_on_reporter_failure must be True or False"),
        ({"ordered": "input"}, "ordered must be True or False, got str"),
        ({"labels": {"team": 1}}, "labels['team'] must be a str, got int"),
        ({"labels": {1: "payments"}}, "labels: keys must be strings, got int: 1"),
        ({"options": {1: 2}}, "options: keys must be strings, got int: 1"),
        ({"reporters": None}, "reporters must be a list of reporters"),
    ],
)
async def test_a_wrong_type_is_refused_at_the_call(
    scripted: PluginManager, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(TypeError) as raised:
        await anyprobe.check(["test://ok"], manager=scripted, **kwargs)
    assert words in one_line(raised.value)
    if "ordered" not in kwargs:
        with pytest.raises(TypeError, match="must be"):
            anyprobe.stream(["test://ok"], manager=scripted, **kwargs)


def test_check_sync_refuses_a_wrong_type_before_starting_a_loop() -> None:
    with pytest.raises(TypeError, match="ordered must be True or False"):
        anyprobe.check_sync(["tcp://127.0.0.1:1"], ordered="yes")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"options": {"sleep": 1}}, "options"),
        ({"labels": {"team": "payments"}}, "labels"),
        ({"timeout": 2}, "timeout"),
        ({"retries": 1}, "retries"),
    ],
)
async def test_prepared_targets_refuse_settings_they_would_ignore(
    scripted: PluginManager, kwargs: dict[str, Any], named: str
) -> None:
    prepared = anyprobe.prepare(["test://ok"], manager=scripted)
    with pytest.raises(TypeError) as raised:
        await anyprobe.check(prepared, **kwargs)
    assert one_line(raised.value) == (
        f"targets from prepare() carry their settings: pass {named} to prepare() instead"
    )
    [result] = await anyprobe.check(prepared)
    assert result.status is anyprobe.Status.OK


def plugin_module(name: str, source: str) -> ModuleType:
    module = ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


async def test_an_installed_plugin_passed_again_raises_a_plugin_error() -> None:
    import anyprobe.plugins.tcp as tcp_plugin

    with pytest.raises(anyprobe.PluginError) as raised:
        await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[tcp_plugin])
    assert one_line(raised.value) == (
        "plugins: plugin 'anyprobe.plugins.tcp' is already registered as 'tcp'"
    )


async def test_a_hook_with_a_wrong_signature_raises_a_plugin_error() -> None:
    wrong = plugin_module(
        "wrong_signature",
        """
        import anyprobe

        @anyprobe.hookimpl
        def anyprobe_register_probes(register, config):
            pass
        """,
    )
    with pytest.raises(anyprobe.PluginError) as raised:
        await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[wrong])
    line = one_line(raised.value)
    assert line.startswith(
        "plugins: Plugin 'wrong_signature' for hook 'anyprobe_register_probes': "
    ), line
    assert "{'config'}" in line, line


def test_a_manager_refuses_a_bad_plugin_and_stays_usable(manager: PluginManager) -> None:
    wrong = plugin_module(
        "wrong_signature",
        """
        import anyprobe

        @anyprobe.hookimpl
        def anyprobe_register_probes(register, config):
            pass
        """,
    )
    with pytest.raises(anyprobe.PluginError):
        manager.register(wrong)
    assert "wrong_signature" not in {info.name for info in manager.plugins}
    manager.register(probes)
    assert manager.probe_for_scheme("test") is not None


QUIET_DEFAULT = """
import logging, resource, sys
import anyio, anyprobe

logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

async def main():
    [result] = await anyprobe.check("tcp://127.0.0.1:{port}")
    assert result.status is anyprobe.Status.OK

anyio.run(main, backend=sys.argv[1])
"""


def test_the_default_concurrency_fits_a_small_file_limit_quietly(
    anyio_backend: str, listening_port: int
) -> None:
    # 256 open files (macOS's default) allow fewer checks at once than the
    # default concurrency: a caller who asked for no number gets no warning.
    proc = subprocess.run(
        [sys.executable, "-c", QUIET_DEFAULT.format(port=listening_port), anyio_backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


FIRST_CALL_IMPORTS = """
import builtins, sys, threading
import anyio
import anyprobe  # what a program does at start-up, as the docs show

loop_thread = threading.get_ident()
real_import = builtins.__import__
on_the_loop = set()

def watching_import(name, *args, **kwargs):
    if threading.get_ident() != loop_thread:
        return real_import(name, *args, **kwargs)
    before = set(sys.modules)
    try:
        return real_import(name, *args, **kwargs)
    finally:
        on_the_loop.update(set(sys.modules) - before)

async def main():
    builtins.__import__ = watching_import
    try:
        results = await anyprobe.check(["tcp://127.0.0.1:{port}"])
    finally:
        builtins.__import__ = real_import
    assert results[0].status is anyprobe.Status.OK

anyio.run(main, backend=sys.argv[1])
print(" ".join(sorted(on_the_loop)))
"""


def test_the_first_call_imports_nothing_heavy_on_the_event_loop(
    anyio_backend: str, listening_port: int
) -> None:
    # pydantic, the plugin manager and the scheduler take a few hundred
    # milliseconds to import: on the caller's loop that is a frozen loop.
    proc = subprocess.run(
        [sys.executable, "-c", FIRST_CALL_IMPORTS.format(port=listening_port), anyio_backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    heavy = {
        "pydantic",
        "anyprobe._manager",
        "anyprobe._run",
        "anyprobe._targets",
        "anyprobe._config",
    }
    assert not heavy & imported, sorted(heavy & imported)


async def test_a_long_list_ending_in_a_check_is_converted_between_loop_turns(
    scripted: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past KEEP_TARGETS plain URLs are kept compact; one Check after them turns
    # the list into Target objects, each rebuilt from its URL: that must not
    # be one stretch without a turn of the event loop.
    from anyprobe._targets import KEEP_TARGETS, TargetList

    turns = 0
    built_at_turn: Counter[int] = Counter()
    make = TargetList._make

    def counting_make(self: TargetList, index: int) -> anyprobe.Target:
        built_at_turn[turns] += 1
        return make(self, index)

    monkeypatch.setattr(TargetList, "_make", counting_make)

    async def count_turns(done: anyio.Event) -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    targets: list[Any] = [f"test://ok-{n}" for n in range(KEEP_TARGETS + 5_000)]
    targets.append(anyprobe.Check("test://ok", name="last"))
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns, done)
        async with anyprobe.stream(targets, manager=scripted, concurrency=500) as results:
            pass
        done.set()
    assert results.summary is not None and results.summary.total == len(targets)
    assert sum(built_at_turn.values()) >= KEEP_TARGETS
    assert max(built_at_turn.values()) < KEEP_TARGETS // 2, built_at_turn.most_common(3)


def test_threads_sharing_a_new_manager_all_see_its_probes() -> None:
    # The first run to read a manager collects its probes; a run in another
    # thread meanwhile must wait for them, not find none ("unknown scheme").
    entered, release = threading.Event(), threading.Event()
    slow = plugin_module("slow_plugin", SLOW_PLUGIN)
    slow.entered, slow.release = entered, release
    shared = PluginManager()
    shared.register(slow)  # first: its hook runs before the built-in plugins'
    shared.load_entrypoints(autoload=False)
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            anyprobe.prepare(["tcp://127.0.0.1:1"], manager=shared)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=prepare)
    first.start()
    assert entered.wait(timeout=60)
    second = threading.Thread(target=prepare)
    second.start()
    second.join(timeout=0.5)  # without the wait, it has failed by now
    release.set()
    first.join()
    second.join()
    assert errors == []


SLOW_PLUGIN = """
import anyprobe

@anyprobe.hookimpl
def anyprobe_register_probes(register):
    entered.set()
    release.wait(timeout=60)
"""


async def test_a_caller_gives_up_on_a_call_still_finding_its_plugins() -> None:
    # Plugins are found (and anyprobe's modules imported) in a worker thread:
    # a caller's deadline must not wait for that thread to finish.
    entered, release = threading.Event(), threading.Event()
    slow = plugin_module("slow_plugin", SLOW_PLUGIN)
    slow.entered, slow.release = entered, release
    gave_up = anyio.Event()

    async def call(scope: anyio.CancelScope) -> None:
        with scope:
            await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[slow])
        gave_up.set()

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, scope)
        try:
            assert await anyio.to_thread.run_sync(entered.wait, 60)
            scope.cancel()
            with anyio.fail_after(10):  # a bound for a loaded machine, not a measure
                await gave_up.wait()
        finally:
            release.set()  # lets the thread end, whatever happened
