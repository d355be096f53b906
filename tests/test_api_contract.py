"""The embedding API's contract: misuse raises at the call with one clear line,
every run's summary is reachable, per-check settings from code, one form of
reporters, exceptions as themselves, no process-wide side effects."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import anyprobe
from anyprobe import Check, PluginManager, Status
from anyprobe.testing import Collector, run_checks
from tests import probes

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    return manager


class Failing(anyprobe.Reporter[anyprobe.ReporterOptions]):
    name = "failing"

    def __init__(self) -> None:
        super().__init__(anyprobe.ReporterOptions())

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        async for _ in results:
            raise OSError("disk full")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


# -- misuse raises at the call ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"timeout": -1}, ValueError, "timeout must be a finite number of seconds > 0, got -1"),
        ({"timeout": float("inf")}, ValueError, "timeout must be a finite number"),
        ({"timeout": 0}, ValueError, "timeout must be"),
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got str"),
        ({"retries": 99}, ValueError, "retries must be between 0 and 10, got 99"),
        ({"retries": -1}, ValueError, "retries must be between 0 and 10"),
        ({"concurrency": 0}, ValueError, "concurrency must be >= 1, got 0"),
        ({"per_host": 0}, ValueError, "per_host must be >= 1"),
        ({"run_timeout": -2}, ValueError, "run_timeout must be a finite number"),
        ({"options": [("a", 1)]}, TypeError, "options must be a mapping, got list"),
        (
            {"reporters": [("jsonl", "out.jsonl")]},
            TypeError,
            "reporters[0]: expected a Reporter instance, a reporter name or a (name, options)",
        ),
        ({"reporters": [object()]}, TypeError, "reporters[0]: expected a Reporter instance"),
    ],
)
async def test_bad_arguments_raise_at_the_call(
    scripted: PluginManager, kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    for call in (anyprobe.stream, anyprobe.prepare):
        if call is anyprobe.prepare and set(kwargs) - {"timeout", "retries", "options"}:
            continue
        with pytest.raises(error) as raised:
            call(["test://ok"], manager=scripted, **kwargs)
        assert words in one_line(raised.value)
    with pytest.raises(error, match=r"must be|expected"):
        await anyprobe.check(["test://ok"], manager=scripted, **kwargs)


async def test_plugins_with_a_manager_raise(scripted: PluginManager) -> None:
    with pytest.raises(TypeError, match="plugins= is ignored when manager= is given"):
        anyprobe.stream(["test://ok"], manager=scripted, plugins=[probes])


def plugin_module(name: str, source: str) -> ModuleType:
    module = ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


async def test_a_broken_plugin_in_plugins_raises() -> None:
    broken = plugin_module(
        "broken_plugin",
        """
        import anyprobe

        @anyprobe.hookimpl
        def anyprobe_register_probes(register):
            raise RuntimeError("no config")
        """,
    )
    with pytest.raises(anyprobe.PluginError) as raised:
        await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[broken])
    assert one_line(raised.value) == (
        "plugins: 'broken_plugin' is broken: "
        "anyprobe_register_probes raised RuntimeError: no config"
    )


async def test_a_plugin_claiming_a_taken_scheme_raises() -> None:
    thief = plugin_module(
        "thief_plugin",
        """
        import anyprobe

        class Thief(anyprobe.Probe[anyprobe.ProbeOptions]):
            name = "thief"
            schemes = ("tcp",)
            Options = anyprobe.ProbeOptions

        @anyprobe.hookimpl
        def anyprobe_register_probes(register):
            register(Thief)
        """,
    )
    with pytest.raises(anyprobe.PluginError, match="scheme 'tcp' is already handled by probe"):
        await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[thief])


async def test_a_plugin_with_no_hooks_raises() -> None:
    with pytest.raises(anyprobe.PluginError, match="has no anyprobe hook implementation"):
        await anyprobe.check(["tcp://127.0.0.1:1"], plugins=[json])


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        (
            b"tcp://x:1",
            "targets must be a URL, an anyprobe.Check or an iterable of them, got bytes",
        ),
        ({"url": "tcp://x:1"}, "got dict"),
        (5, "got int"),
        ([("test://ok", {"sleep": 1})], "targets[0]: expected a URL string"),
        (["test://ok", 7], "targets[1]: expected a URL string, an anyprobe.Check"),
    ],
)
async def test_bad_target_types_are_refused_in_one_line(
    scripted: PluginManager, targets: Any, words: str
) -> None:
    with pytest.raises(TypeError) as raised:
        await anyprobe.check(targets, manager=scripted)
    assert words in one_line(raised.value)


async def test_one_string_is_one_target(scripted: PluginManager) -> None:
    [result] = await anyprobe.check("test://ok", manager=scripted)
    assert result.name == "test://ok"


def test_check_sync_inside_a_running_loop_says_what_to_do(anyio_backend: str) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError) as raised:
            anyprobe.check_sync(["tcp://127.0.0.1:1"])
        assert f"inside a running {anyio_backend} event loop" in one_line(raised.value)
        assert "await anyprobe.check(...)" in str(raised.value)

    anyio.run(main, backend=anyio_backend)


# -- every run's summary ------------------------------------------------------------


async def test_check_returns_its_summary(scripted: PluginManager) -> None:
    results = await anyprobe.check(["test://ok", "test://fail", "test://raise"], manager=scripted)
    assert isinstance(results, list) and len(results) == 3
    summary = results.summary
    assert summary.counts == {Status.OK: 1, Status.CRITICAL: 1, Status.UNKNOWN: 1}
    assert summary.interrupted is None
    assert summary.reporter_failures == ()
    assert summary.broken_plugins == ()


def test_check_sync_returns_its_summary(anyio_backend: str, listening_port: int) -> None:
    results = anyprobe.check_sync([f"tcp://127.0.0.1:{listening_port}"], backend=anyio_backend)
    assert results.summary.counts == {Status.OK: 1}


async def test_a_reporter_failure_is_in_the_summary_or_raises(scripted: PluginManager) -> None:
    results = await anyprobe.check(["test://ok"], manager=scripted, reporters=[Failing()])
    assert results.summary.reporter_failures == ("reporter failing failed: OSError: disk full",)
    with pytest.raises(anyprobe.ReporterError) as raised:
        await anyprobe.check(
            ["test://ok"], manager=scripted, reporters=[Failing()], raise_on_reporter_failure=True
        )
    assert str(raised.value) == "reporter failing failed: OSError: disk full"
    assert [r.status for r in raised.value.results] == [Status.OK]  # type: ignore[attr-defined]
    with pytest.raises(anyprobe.ReporterError):
        async with anyprobe.stream(
            ["test://ok"], manager=scripted, reporters=[Failing()], raise_on_reporter_failure=True
        ) as stream:
            async for _ in stream:
                pass


async def test_a_broken_plugin_of_the_manager_is_in_the_summary(scripted: PluginManager) -> None:
    scripted.register(
        plugin_module(
            "half_broken",
            """
            import anyprobe

            @anyprobe.hookimpl
            def anyprobe_register_reporters(register):
                raise ImportError("no module named 'fancy'")
            """,
        )
    )
    results = await anyprobe.check(["test://ok"], manager=scripted)
    assert results.summary.broken_plugins == (
        "plugin half_broken is broken: anyprobe_register_reporters raised ImportError: "
        "no module named 'fancy'",
    )


async def test_run_timeout_returns_what_finished(scripted: PluginManager) -> None:
    results = await anyprobe.check(
        ["test://ok-1", "test://ok-2", "test://hang"], manager=scripted, timeout=60, run_timeout=0.5
    )
    assert sorted(r.name for r in results) == ["test://ok-1", "test://ok-2"]
    assert results.summary.interrupted == "run_timeout (0.5 s)"
    assert results.summary.not_finished == 1


# -- targets from code ----------------------------------------------------------------


async def test_a_check_object_carries_its_own_settings(
    scripted: PluginManager, listening_port: int
) -> None:
    results = await anyprobe.check(
        [
            Check("test://slow", name="slow one", options={"sleep": 0.001}, labels={"team": "a"}),
            Check(f"tcp://127.0.0.1:{listening_port}", timeout=3, retries=2),
            "test://ok",
        ],
        manager=scripted,
        labels={"site": "x"},
        ordered=True,
    )
    assert [r.name for r in results] == [
        "slow one",
        f"tcp://127.0.0.1:{listening_port}",
        "test://ok",
    ]
    assert results[0].labels == {"site": "x", "team": "a"}
    assert {r.status for r in results} == {Status.OK}


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            Check("test://ok", options={"slep": 1}),
            "targets: check test://ok: field 'options.slep': unknown option for probe "
            "scripted (did you mean 'sleep'?)",
        ),
        (
            Check("test://ok", name="a", options={"sleep": -1}),
            "targets: check 'a': field 'options.sleep'",
        ),
        (Check("test://ok", name="a", retries=11), "targets: check 'a': field 'retries'"),
        (Check("test://ok", name="a", timeout=0), "targets: check 'a': field 'timeout'"),
        (Check("nope://x", name="a"), "targets: check 'a': field 'url': nope://x: unknown scheme"),
        (Check("test://ok", name=""), "targets: check test://ok: field 'name'"),
    ],
)
async def test_a_bad_check_object_is_refused_like_a_config_check(
    scripted: PluginManager, check: Check, message: str
) -> None:
    with pytest.raises(anyprobe.UsageError) as raised:
        await anyprobe.check([check], manager=scripted)
    assert one_line(raised.value).startswith(message), str(raised.value)


async def test_duplicate_check_names_are_refused(scripted: PluginManager) -> None:
    with pytest.raises(anyprobe.OptionsError, match="check 'a': field 'name': duplicate"):
        await anyprobe.check(
            [Check("test://ok", name="a"), Check("test://ok-2", name="a")], manager=scripted
        )


async def test_prepared_targets_pass_to_check(scripted: PluginManager) -> None:
    prepared = anyprobe.prepare(["test://ok", "test://fail"], manager=scripted)
    manager, targets = prepared
    assert manager is scripted and len(targets) == 2
    results = await anyprobe.check(prepared, ordered=True)
    assert [r.status for r in results] == [Status.OK, Status.CRITICAL]
    with pytest.raises(TypeError, match="carry their plugin manager"):
        await anyprobe.check(prepared, manager=scripted)


async def test_ordered_gives_the_input_order(scripted: PluginManager) -> None:
    targets = [f"test://slow-{i}" for i in range(8)] + ["test://ok", "test://ok"]
    results = await anyprobe.check(
        [Check(t, options={"sleep": (8 - i) * 0.005}) for i, t in enumerate(targets[:8])]
        + targets[8:],
        manager=scripted,
        ordered=True,
    )
    assert [r.name for r in results] == targets


# -- reporters: one form everywhere --------------------------------------------------


async def test_reporters_by_name_instance_or_pair_in_check_and_anyprobe_run(
    scripted: PluginManager, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    collector = Collector()
    results = await anyprobe.check(
        ["test://ok"],
        manager=scripted,
        reporters=[collector, ("jsonl", {"path": str(first)})],
    )
    assert [r.name for r in collector.results] == [r.name for r in results]
    assert json.loads(first.read_text())["name"] == "test://ok"
    other = Collector()
    record = await run_checks(
        scripted, ["test://ok"], reporters=[other, ("jsonl", {"path": str(second)})]
    )
    assert other.results == record.results
    assert json.loads(second.read_text())["name"] == "test://ok"


async def test_an_unknown_reporter_name_raises(scripted: PluginManager) -> None:
    with pytest.raises(
        anyprobe.OptionsError, match="unknown reporter 'jsnl' \\(did you mean 'jsonl'"
    ):
        await anyprobe.check(["test://ok"], manager=scripted, reporters=["jsnl"])


# -- exceptions as themselves, no process-wide side effects ------------------------------

CTRL_C = """
import signal, sys, threading
import anyio, anyprobe

MAIN = threading.get_ident()


class Waits(anyprobe.Probe[anyprobe.ProbeOptions]):
    name = "waits"
    schemes = ("waits",)
    Options = anyprobe.ProbeOptions

    def validate_url(self, url, text):
        return url.hostname or "", None

    async def check(self, target, options, ctx):
        if target.host != "now":
            await anyio.sleep_forever()
        return anyprobe.Outcome.ok("done")


@anyprobe.hookimpl
def anyprobe_register_probes(register):
    register(Waits)


class InterruptOnFirstResult(anyprobe.Reporter[anyprobe.ReporterOptions]):
    name = "interrupt"

    async def report(self, results, ctx):
        async for _ in results:
            # Ctrl-C, to the main thread, while the other checks still wait.
            threading.Timer(0.1, signal.pthread_kill, (MAIN, signal.SIGINT)).start()
            async for _ in results:
                pass


async def main():
    await anyprobe.check(
        ["waits://now"] + [f"waits://forever-{i}" for i in range(5)],
        timeout=600,
        plugins=[sys.modules[__name__]],
        reporters=[InterruptOnFirstResult(anyprobe.ReporterOptions())],
    )

try:
    anyio.run(main, backend=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except BaseException as exc:
    print(type(exc).__name__, repr(exc))
else:
    print("finished without the interrupt")
"""


def test_ctrl_c_arrives_as_keyboard_interrupt(anyio_backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C, anyio_backend],
        capture_output=True,
        text=True,
        timeout=300,  # a bound for a loaded machine; the interrupt ends it in a second
        check=False,
    )
    assert proc.stdout.strip() == "KeyboardInterrupt", proc.stdout + proc.stderr


NO_SIDE_EFFECTS = """
import logging, resource, sys, threading
import anyio, anyprobe

logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
threads = []

class Watch(anyprobe.Reporter[anyprobe.ReporterOptions]):
    name = "watch"
    async def report(self, results, ctx):
        async for _ in results:
            threads.extend(t.name for t in threading.enumerate())

async def main():
    results = await anyprobe.check(
        ["tcp://127.0.0.1:{port}"], concurrency=1000,
        reporters=[Watch(anyprobe.ReporterOptions())],
    )
    assert results[0].status is anyprobe.Status.OK

anyio.run(main, backend=sys.argv[1])
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], "anyprobe-watchdog" in threads)
"""


def test_a_library_call_changes_nothing_process_wide(
    anyio_backend: str, listening_port: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_SIDE_EFFECTS.format(port=listening_port), anyio_backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["256", "False"]
    assert "anyprobe.scheduler: concurrency 1000 lowered to 96" in proc.stderr


def test_plugin_discovery_is_shared_and_thread_safe() -> None:
    from anyprobe import _manager as manager_module

    anyprobe.forget_discovered_plugins()
    managers: list[PluginManager] = []

    def build() -> None:
        managers.append(manager_module.default_manager())

    workers = [threading.Thread(target=build) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(manager_module._discovery) == 1
    assert all(m.probe_for_scheme("tcp") is not None for m in managers)
    anyprobe.forget_discovered_plugins()
    assert not manager_module._discovery


def test_dir_shows_the_api() -> None:
    names = set(dir(anyprobe))
    assert {"check", "stream", "check_sync", "prepare", "Check", "Results", "Status"} <= names
    assert set(anyprobe.__all__) <= names
