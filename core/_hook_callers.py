"""The hook callers the plugin manager keeps, and how it knows they are stale.

:class:`~anyprobe._manager.PluginManager` calls every hook through pluggy
subset callers (one implementation at a time, so that each plugin's failure
stays its own). Making them on every call cost more than the call; they are
kept per hook while :class:`CountingPluginManager` counts no change to who
implements what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy


class CountingPluginManager(pluggy.PluginManager):
    """pluggy's manager, counting the changes to who implements what, so that
    :class:`~anyprobe._manager.PluginManager` knows when the callers it keeps are stale."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        #: Plugins registered, unregistered, blocked or unblocked, specs added.
        self.changes = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.changes += 1
        try:
            return super().register(plugin, name)
        finally:
            self.changes += 1

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        self.changes += 1
        try:
            return super().unregister(plugin, name)
        finally:
            self.changes += 1

    def set_blocked(self, name: str) -> None:
        self.changes += 1
        super().set_blocked(name)

    def unblock(self, name: str) -> bool:
        self.changes += 1
        return super().unblock(name)

    def add_hookspecs(self, module_or_class: Any) -> None:
        self.changes += 1
        super().add_hookspecs(module_or_class)


def callers_alone(
    hook_manager: pluggy.PluginManager,
    hook: pluggy.HookCaller,
    *,
    skip: Callable[[pluggy.HookImpl], bool],
) -> list[tuple[str, pluggy.HookCaller]]:
    """Each plugin implementing ``hook`` (but wrappers and those ``skip`` names),
    with a caller of its implementation alone, in the order pluggy calls them:
    tryfirst ones first, trylast ones last, otherwise the last registered first."""
    everyone = hook_manager.get_plugins()
    each: list[tuple[str, pluggy.HookCaller]] = []
    seen: set[str] = set()
    for impl in reversed(hook.get_hookimpls()):
        name = impl.plugin_name
        if skip(impl) or impl.wrapper or impl.hookwrapper or name in seen:
            continue
        seen.add(name)
        others = [plugin for plugin in everyone if plugin is not impl.plugin]
        each.append((name, hook_manager.subset_hook_caller(hook.name, others)))
    return each
