"""Hooks are called through pluggy: its markers behave as pluggy documents them,
and a plugin whose implementation raises is broken on its own.

pluggy's order: ``tryfirst`` implementations first, ``trylast`` ones last,
otherwise the plugin registered last is called first; a wrapper
(``wrapper=True`` or the older ``hookwrapper=True``) runs once, around all of
them. The lifecycle hooks are called from inside a run, so those tests run a
real check on both backends.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

import anyprobe
from anyprobe import PluginError, PluginManager
from tests import probes
from tests.cli import anyprobe as run_anyprobe
from tests.test_plugins import make_distribution


def recorder(calls: list[str], label: str, **marker: bool) -> object:
    """A plugin that notes ``label`` in ``calls`` from each hook, marked with ``marker``."""
    mark = anyprobe.hookimpl(**marker)

    class Recorder:
        @mark
        def anyprobe_register_reporters(self, register: Callable[[type[Any]], None]) -> None:
            calls.append(label)

        @mark
        def anyprobe_run_started(self, run: anyprobe.RunInfo) -> None:
            calls.append(f"{label} started")

        @mark
        def anyprobe_run_finished(
            self, run: anyprobe.RunInfo, summary: anyprobe.RunSummary
        ) -> None:
            calls.append(f"{label} finished")

    return Recorder()


def register_in_order(manager: PluginManager, calls: list[str]) -> None:
    """Registered: last (trylast), plain-1, first (tryfirst), plain-2."""
    manager.register(recorder(calls, "last", trylast=True), name="last")
    manager.register(recorder(calls, "plain-1"), name="plain-1")
    manager.register(recorder(calls, "first", tryfirst=True), name="first")
    manager.register(recorder(calls, "plain-2"), name="plain-2")


PLUGGY_ORDER = ["first", "plain-2", "plain-1", "last"]


async def run_one_check(manager: PluginManager) -> anyprobe.Results:
    manager.register(probes)
    return await anyprobe.check(["test://ok"], manager=manager)


def test_registration_hooks_are_called_in_pluggys_order(manager: PluginManager) -> None:
    calls: list[str] = []
    register_in_order(manager, calls)
    assert manager.reporters  # the registration hooks run when first needed
    assert calls == PLUGGY_ORDER


@pytest.mark.anyio
async def test_lifecycle_hooks_are_called_in_pluggys_order(manager: PluginManager) -> None:
    calls: list[str] = []
    register_in_order(manager, calls)
    await run_one_check(manager)
    started = [f"{label} started" for label in PLUGGY_ORDER]
    finished = [f"{label} finished" for label in PLUGGY_ORDER]
    assert calls[len(PLUGGY_ORDER) :] == started + finished


class NewStyleWrapper:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @anyprobe.hookimpl(wrapper=True)
    def anyprobe_run_started(self, run: anyprobe.RunInfo) -> Generator[None, Any, Any]:
        self.calls.append("wrapper before")
        result = yield
        self.calls.append(f"wrapper after, result {result!r}")
        return result


class OldStyleWrapper:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @anyprobe.hookimpl(hookwrapper=True)
    def anyprobe_run_finished(
        self, run: anyprobe.RunInfo, summary: anyprobe.RunSummary
    ) -> Generator[None, Any, None]:
        self.calls.append("old wrapper before")
        outcome = yield
        self.calls.append(f"old wrapper after, result {outcome.get_result()!r}")


@pytest.mark.anyio
async def test_wrappers_run_once_around_every_implementation(manager: PluginManager) -> None:
    calls: list[str] = []
    manager.register(NewStyleWrapper(calls), name="new-wrapper")
    manager.register(OldStyleWrapper(calls), name="old-wrapper")
    register_in_order(manager, calls)
    await run_one_check(manager)
    assert calls[len(PLUGGY_ORDER) :] == [
        "wrapper before",
        *(f"{label} started" for label in PLUGGY_ORDER),
        "wrapper after, result []",
        "old wrapper before",
        *(f"{label} finished" for label in PLUGGY_ORDER),
        "old wrapper after, result []",
    ]
    assert not manager.broken


class RaisingOnStart:
    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_run_started(self, run: anyprobe.RunInfo) -> None:
        raise RuntimeError("no licence key")


@pytest.mark.anyio
async def test_an_implementation_that_raises_breaks_only_its_plugin(
    manager: PluginManager,
) -> None:
    calls: list[str] = []
    manager.register(NewStyleWrapper(calls), name="new-wrapper")
    register_in_order(manager, calls)
    manager.register(RaisingOnStart(), name="raising")
    results = await run_one_check(manager)
    assert [r.status for r in results] == [anyprobe.Status.OK]
    # The others are still called, and the wrapper around them sees no error.
    assert calls[len(PLUGGY_ORDER) :] == [
        "wrapper before",
        *(f"{label} started" for label in PLUGGY_ORDER),
        "wrapper after, result []",
        *(f"{label} finished" for label in PLUGGY_ORDER),
    ]
    assert {info.name: info.error for info in manager.broken} == {
        "raising": "anyprobe_run_started raised RuntimeError: no licence key"
    }


class WrapperRaising:
    def __init__(self, when: str) -> None:
        self.when = when

    @anyprobe.hookimpl(wrapper=True)
    def anyprobe_run_started(self, run: anyprobe.RunInfo) -> Generator[None, Any, Any]:
        if self.when == "before":
            raise RuntimeError("before yield")
        result = yield
        raise RuntimeError("after yield")
        return result  # pragma: no cover


@pytest.mark.anyio
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_wrapper_that_raises_breaks_only_its_plugin(
    manager: PluginManager, when: str
) -> None:
    calls: list[str] = []
    manager.register(WrapperRaising(when), name="raising-wrapper")
    register_in_order(manager, calls)
    await run_one_check(manager)
    started = [c for c in calls if c.endswith(" started")]
    assert started == [f"{label} started" for label in PLUGGY_ORDER]  # each exactly once
    assert {info.name: info.error for info in manager.broken} == {
        "raising-wrapper": f"anyprobe_run_started raised RuntimeError: {when} yield"
    }


class RaisingOnRegister:
    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_register_reporters(self, register: Callable[[type[Any]], None]) -> None:
        raise RuntimeError("cannot register")


def test_a_registration_hook_that_raises_breaks_only_its_plugin(manager: PluginManager) -> None:
    calls: list[str] = []
    manager.register(RaisingOnRegister(), name="raising")
    register_in_order(manager, calls)
    assert "jsonl" in manager.reporters
    assert calls == PLUGGY_ORDER
    assert [info.name for info in manager.broken] == ["raising"]


class TcpThief:
    class Probe(probes.ScriptedProbe):
        name = "thief"
        schemes = ("tcp", "thief")

    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_register_probes(self, register: Callable[[type[Any]], None]) -> None:
        register(self.Probe)


def test_calling_first_never_takes_a_builtin_scheme(manager: PluginManager) -> None:
    manager.register(TcpThief(), name="thief")
    assert manager.schemes["tcp"] == "tcp"
    # All or nothing: the plugin's other scheme is not taken either.
    assert "thief" not in manager.schemes
    (broken,) = manager.broken
    assert broken.error == "scheme 'tcp' is already handled by probe 'tcp'"


def test_a_plugin_that_cannot_be_hashed_is_refused_in_one_line(manager: PluginManager) -> None:
    with pytest.raises(PluginError, match="cannot be hashed") as caught:
        manager.register(types.SimpleNamespace(), name="namespace")
    assert "\n" not in str(caught.value)


def test_a_firstresult_hook_returns_the_first_answer_and_skips_the_rest(
    manager: PluginManager,
) -> None:
    # No anyprobe hook wants a single answer yet; this pins what one declared
    # with firstresult=True gets.
    specs = types.ModuleType("specs")

    @anyprobe.hookspec(firstresult=True)
    def anyprobe_pick(target: str) -> str | None:
        """Answer for ``target``."""

    specs.anyprobe_pick = anyprobe_pick  # type: ignore[attr-defined]
    manager._add_hookspecs(specs)
    calls: list[str] = []

    def answering(label: str, answer: str | None, **marker: bool) -> type:
        @anyprobe.hookimpl(**marker)
        def anyprobe_pick(target: str) -> str | None:
            calls.append(label)
            if answer == "raise":
                raise RuntimeError("no answer")
            return answer

        return type(label, (), {"anyprobe_pick": anyprobe_pick})

    manager.register(answering("no-answer", None, tryfirst=True), name="no-answer")
    manager.register(answering("raising", "raise", tryfirst=True), name="raising")
    manager.register(answering("last", "from last", trylast=True), name="last")
    manager.register(answering("plain", "from plain"), name="plain")
    assert manager._call("anyprobe_pick", target="x") == "from plain"
    assert calls == ["raising", "no-answer", "plain"]
    assert [info.name for info in manager.broken] == ["raising"]


class NotAGenerator:
    @anyprobe.hookimpl(wrapper=True)
    def anyprobe_run_started(self, run: anyprobe.RunInfo) -> None:
        pass


def test_a_wrapper_that_is_not_a_generator_is_refused_in_one_line(
    manager: PluginManager,
) -> None:
    with pytest.raises(PluginError) as caught:
        manager.register(NotAGenerator(), name="not-a-generator")
    assert str(caught.value) == (
        "Plugin 'not-a-generator' for hook 'anyprobe_run_started': Declared as"
        " wrapper=True or hookwrapper=True but function is not a generator function"
    )
    assert "not-a-generator" not in [info.name for info in manager.plugins]


class NeverYields:
    @anyprobe.hookimpl(wrapper=True)
    def anyprobe_run_started(self, run: anyprobe.RunInfo) -> Generator[None, Any, Any]:
        if run.total:
            return None
        yield  # pragma: no cover


@pytest.mark.anyio
async def test_a_wrapper_that_never_yields_breaks_only_its_plugin(manager: PluginManager) -> None:
    calls: list[str] = []
    manager.register(NeverYields(), name="never-yields")
    register_in_order(manager, calls)
    await run_one_check(manager)
    started = [c for c in calls if c.endswith(" started")]
    assert started == [f"{label} started" for label in PLUGGY_ORDER]
    (broken,) = manager.broken
    assert broken.name == "never-yields" and "did not yield" in str(broken.error)


def test_an_installed_plugin_with_a_wrong_wrapper_is_broken_and_the_others_load(
    tmp_path: Path,
) -> None:
    source = """
        import anyprobe

        @anyprobe.hookimpl(hookwrapper=True)
        def anyprobe_run_finished(run, summary):
            pass
    """
    make_distribution(
        tmp_path, "anyprobe_wrong", {"wrong": "anyprobe_wrong"}, {"anyprobe_wrong": source}
    )
    proc = run_anyprobe("plugins", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["wrong"]["status"] == "broken"
    assert plugins["tcp"]["status"] == "ok"


def test_a_call_straight_through_pluggy_calls_each_implementation_once(
    manager: PluginManager,
) -> None:
    calls: list[str] = []
    register_in_order(manager, calls)
    manager.hook_manager.hook.anyprobe_register_reporters(register=lambda item: None)
    assert calls == PLUGGY_ORDER
