"""The plugin manager keeps the hook callers it makes, and never calls through a
stale one: a plugin unregistered, blocked or broken since is not called again,
and one registered since is called once, on its own."""

from __future__ import annotations

from typing import Any

import pytest

import anyprobe
from anyprobe import PluginManager


class Answering:
    """A plugin answering ``anyprobe_metrics_registry`` (a firstresult hook) with
    ``answer``, noting each call in ``calls``."""

    def __init__(self, calls: list[str], label: str, answer: Any = None, fail: bool = False):
        self.calls = calls
        self.label = label
        self.answer = answer
        self.fail = fail

    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_metrics_registry(self, results: Any, check_labels: bool) -> Any:
        self.calls.append(self.label)
        if self.fail:
            raise RuntimeError("gone wrong")
        return self.answer


class Wrapping:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @anyprobe.hookimpl(wrapper=True)
    def anyprobe_metrics_registry(self, results: Any, check_labels: bool) -> Any:
        self.calls.append("wrapper")
        return (yield)


def ask(manager: PluginManager) -> Any:
    return manager.call_firstresult("anyprobe_metrics_registry", results=[], check_labels=False)


@pytest.fixture
def manager() -> PluginManager:
    return PluginManager()  # no built-in plugin: only the ones each test registers


def test_an_unregistered_plugin_is_never_called_again(manager: PluginManager) -> None:
    calls: list[str] = []
    gone = Answering(calls, "gone")
    manager.register(gone, name="gone")
    manager.register(Answering(calls, "stays", answer="stays"), name="stays")
    manager.register(Wrapping(calls), name="wrapping")
    assert ask(manager) == "stays"
    assert ask(manager) == "stays"  # through the callers kept from the first call
    calls.clear()
    manager.hook_manager.unregister(gone)
    assert ask(manager) == "stays"
    assert calls == ["wrapper", "stays"]


def test_a_blocked_plugin_is_never_called_again(manager: PluginManager) -> None:
    calls: list[str] = []
    manager.register(Answering(calls, "blocked"), name="blocked")
    manager.register(Answering(calls, "stays", answer="stays"), name="stays")
    assert ask(manager) == "stays"
    calls.clear()
    manager.hook_manager.set_blocked("blocked")
    assert ask(manager) == "stays"
    assert calls == ["stays"]


def test_an_unregistered_wrapper_is_never_called_again(manager: PluginManager) -> None:
    calls: list[str] = []
    wrapping = Wrapping(calls)
    manager.register(wrapping, name="wrapping")
    manager.register(Answering(calls, "answers", answer=1), name="answers")
    assert ask(manager) == 1
    calls.clear()
    manager.hook_manager.unregister(wrapping)
    assert ask(manager) == 1
    assert calls == ["answers"]


def test_a_plugin_registered_later_is_called_once_on_its_own(manager: PluginManager) -> None:
    calls: list[str] = []
    manager.register(Answering(calls, "first"), name="first")
    manager.register(Wrapping(calls), name="wrapping")
    assert ask(manager) is None
    calls.clear()
    manager.register(Answering(calls, "later"), name="later")
    assert ask(manager) is None
    # Last registered first, each once, the wrapper once around them.
    assert calls == ["wrapper", "later", "first"]
    calls.clear()
    manager.hook_manager.register(Answering(calls, "through pluggy"), name="through pluggy")
    assert ask(manager) is None
    assert calls == ["wrapper", "through pluggy", "later", "first"]


def test_a_plugin_broken_since_is_never_called_again(manager: PluginManager) -> None:
    calls: list[str] = []
    failing = Answering(calls, "failing")
    manager.register(Answering(calls, "answers", answer=1), name="answers")
    manager.register(failing, name="failing")  # called first: registered last
    assert ask(manager) == 1
    failing.fail = True
    assert ask(manager) == 1
    calls.clear()
    assert ask(manager) == 1
    assert calls == ["answers"]
    assert [info.name for info in manager.broken] == ["failing"]
