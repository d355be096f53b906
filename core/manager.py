"""The plugin manager: finds plugins, collects their probes and reporters.

Every run owns a :class:`PluginManager`; there is no global registry, so two
runs with different plugins can coexist in one process.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .errors import PluginError
from .probe import Probe
from .reporter import Reporter

log = logging.getLogger("anyprobe.plugins")

ENTRY_POINT_GROUP = "anyprobe"
LOAD_PLUGINS_ENV = "ANYPROBE_LOAD_PLUGINS"


@dataclass
class PluginInfo:
    """One plugin as ``anyprobe plugins`` shows it."""

    name: str
    package: str | None = None
    version: str | None = None
    module: str | None = None
    probes: list[str] = field(default_factory=list)
    reporters: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None


class PluginManager:
    """Loads plugins and holds the probe and reporter types they register.

    >>> manager = PluginManager()
    >>> manager.load_entrypoints()      # built-in and installed plugins
    >>> manager.register(my_plugin)     # or any module with hook implementations
    >>> manager.probe_for_scheme("tcp")
    """

    def __init__(self) -> None:
        self.hook_manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.hook_manager.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._probes: dict[str, Probe[Any]] = {}
        self._schemes: dict[str, str] = {}
        self._reporters: dict[str, type[Reporter[Any]]] = {}
        self._demo_services: list[Callable[..., Any]] = []
        self._collected = False
        # Runs in several threads may share a manager: the first to read it
        # collects what the plugins registered while the others wait.
        self._collect_lock = threading.RLock()
        self._collecting = False

    # -- loading ---------------------------------------------------------

    def load_entrypoints(
        self,
        *,
        autoload: bool = True,
        only: Iterable[str] | None = None,
        cached: bool = False,
    ) -> None:
        """Load plugins from the ``anyprobe`` entry-point group.

        anyprobe's own plugins always load. Third-party ones load unless
        ``autoload`` is false; ``only`` (or the ``ANYPROBE_LOAD_PLUGINS``
        environment variable, comma-separated entry-point names, empty for
        none) restricts them to the names given. ``cached`` reuses what an
        earlier call in this process found (see :func:`forget_discovered_plugins`)
        instead of scanning the installed packages again.
        """
        if only is None and LOAD_PLUGINS_ENV in os.environ:
            only = [n.strip() for n in os.environ[LOAD_PLUGINS_ENV].split(",") if n.strip()]
        wanted = frozenset(only) if only is not None else None
        found = _discovered(autoload, wanted) if cached else _discover(autoload, wanted)
        for plugin in found:
            if plugin.info.name in self._infos:
                continue
            info = dataclasses.replace(plugin.info, probes=[], reporters=[])
            self._infos[info.name] = info
            if plugin.plugin is not None:
                self.hook_manager.register(plugin.plugin, name=info.name)
            self._collected = False

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register ``plugin`` (a module or object with hook implementations)."""
        plugin_name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        if plugin_name in self._infos:
            raise PluginError(f"a plugin named {plugin_name!r} is already registered")
        try:
            self.hook_manager.register(plugin, name=plugin_name)
        except pluggy.PluginValidationError as exc:
            # pluggy's message spans lines: keep its first, which names the hook.
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PluginError(f"plugin {plugin_name!r} is invalid: {first}") from exc
        except ValueError as exc:  # the same object under another name
            other = self.hook_manager.get_name(plugin)
            raise PluginError(f"plugin {plugin_name!r} is already registered as {other!r}") from exc
        self._infos[plugin_name] = PluginInfo(
            name=plugin_name, module=getattr(plugin, "__name__", None)
        )
        self._collected = False
        return plugin_name

    # -- what plugins registered ----------------------------------------

    def _call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of a hook on its own, so one failure stays local."""
        hook = getattr(self.hook_manager.hook, hook_name)
        for impl in hook.get_hookimpls():  # in registration order
            info = self._infos.get(impl.plugin_name)
            if info is not None and info.broken:
                continue
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                message = f"{hook_name} raised {type(exc).__name__}: {exc}"
                self._mark_broken(impl.plugin_name, message)

    def _mark_broken(self, plugin_name: str, message: str) -> None:
        info = self._infos.setdefault(plugin_name, PluginInfo(name=plugin_name))
        info.error = info.error or message
        log.debug("plugin %s: %s", plugin_name, message)

    def _collect(self) -> None:
        if self._collected:
            return
        with self._collect_lock:
            if self._collected or self._collecting:
                return  # done meanwhile, or a hook of this thread reads the manager
            self._collecting = True
            try:
                self._collect_now()
            finally:
                self._collecting = False
                self._collected = True

    def _collect_now(self) -> None:
        self._probes.clear()
        self._schemes.clear()
        self._reporters.clear()
        self._demo_services.clear()
        for info in self._infos.values():
            info.probes.clear()
            info.reporters.clear()

        current: list[str] = [""]

        def register_probe(probe_type: type[Any]) -> None:
            plugin = current[0]
            if not (isinstance(probe_type, type) and issubclass(probe_type, Probe)):
                raise PluginError(f"{probe_type!r} is not a subclass of anyprobe.Probe")
            for attr in ("name", "schemes"):
                if not getattr(probe_type, attr, None):
                    raise PluginError(f"probe {probe_type.__name__} has no {attr}")
            if probe_type.name in self._probes:
                raise PluginError(f"probe name {probe_type.name!r} is already registered")
            taken = [s for s in probe_type.schemes if s in self._schemes]
            if taken:
                owner = self._schemes[taken[0]]
                raise PluginError(f"scheme {taken[0]!r} is already handled by probe {owner!r}")
            self._probes[probe_type.name] = probe_type()
            for scheme in probe_type.schemes:
                self._schemes[scheme.lower()] = probe_type.name
            self._infos[plugin].probes.append(probe_type.name)

        def register_reporter(reporter_type: type[Any]) -> None:
            plugin = current[0]
            if not (isinstance(reporter_type, type) and issubclass(reporter_type, Reporter)):
                raise PluginError(f"{reporter_type!r} is not a subclass of anyprobe.Reporter")
            if not getattr(reporter_type, "name", None):
                raise PluginError(f"reporter {reporter_type.__name__} has no name")
            if reporter_type.name in self._reporters:
                raise PluginError(f"reporter name {reporter_type.name!r} is already registered")
            self._reporters[reporter_type.name] = reporter_type
            self._infos[plugin].reporters.append(reporter_type.name)

        hooks: list[tuple[str, Callable[[type[Any]], None]]] = [
            ("anyprobe_register_probes", register_probe),
            ("anyprobe_register_reporters", register_reporter),
            ("anyprobe_demo_services", self._demo_services.append),
        ]
        for hook_name, register in hooks:
            hook = getattr(self.hook_manager.hook, hook_name)
            for impl in hook.get_hookimpls():  # in registration order
                info = self._infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
                if info.broken:
                    continue
                current[0] = impl.plugin_name
                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._mark_broken(
                        impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}"
                    )

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin known, broken ones included, in load order."""
        self._collect()
        return list(self._infos.values())

    @property
    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.broken]

    @property
    def probes(self) -> Mapping[str, Probe[Any]]:
        """Probe instances by name."""
        self._collect()
        return self._probes

    @property
    def schemes(self) -> Mapping[str, str]:
        """Probe names by URL scheme."""
        self._collect()
        return self._schemes

    @property
    def reporters(self) -> Mapping[str, type[Reporter[Any]]]:
        """Reporter types by name."""
        self._collect()
        return self._reporters

    @property
    def demo_services(self) -> list[Callable[..., Any]]:
        self._collect()
        return list(self._demo_services)

    def probe_for_scheme(self, scheme: str) -> Probe[Any] | None:
        name = self.schemes.get(scheme.lower())
        return self._probes[name] if name else None

    def call_lifecycle(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook (``anyprobe_run_started`` ...), isolating failures."""
        self._collect()
        self._call_each(hook_name, **kwargs)


@dataclass(frozen=True)
class _Found:
    """One entry point, loaded: its plugin object, or ``info.error`` if it failed."""

    info: PluginInfo
    plugin: object | None


def _discover(autoload: bool, wanted: frozenset[str] | None) -> list[_Found]:
    """Scan the installed packages for plugins and import them (slow: blocking I/O)."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    # anyprobe's own plugins first: a third-party one cannot take their schemes.
    ordered = sorted(found, key=lambda ep: ep.dist is None or ep.dist.name != "anyprobe")
    loaded: list[_Found] = []
    names: set[str] = set()
    for ep in ordered:
        package = ep.dist.name if ep.dist else None
        builtin = package == "anyprobe"
        if not builtin and (not autoload or (wanted is not None and ep.name not in wanted)):
            continue
        if ep.name in names:
            continue
        names.add(ep.name)
        info = PluginInfo(
            name=ep.name,
            package=package,
            version=ep.dist.version if ep.dist else None,
            module=ep.value,
        )
        plugin = None
        try:
            plugin = ep.load()
        except Exception as exc:
            info.error = f"failed to load {ep.value}: {type(exc).__name__}: {exc}"
            log.debug("plugin %s: %s", ep.name, info.error)
        loaded.append(_Found(info, plugin))
    return loaded


_discovery_lock = threading.Lock()
_discovery: dict[tuple[bool, frozenset[str] | None], list[_Found]] = {}


def _discovered(autoload: bool, wanted: frozenset[str] | None) -> list[_Found]:
    """:func:`_discover` once per process and set of arguments, from any thread."""
    key = (autoload, wanted)
    with _discovery_lock:
        found = _discovery.get(key)
        if found is None:
            found = _discovery[key] = _discover(autoload, wanted)
            for plugin in found:
                if plugin.info.error:
                    # Once per process: an embedding program sees it in its own log.
                    log.warning("plugin %s is broken: %s", plugin.info.name, plugin.info.error)
        return found


def forget_discovered_plugins() -> None:
    """Make the next call that builds its own plugin manager scan the installed
    packages again (after installing a plugin into a running process)."""
    with _discovery_lock:
        _discovery.clear()


def type_name(annotation: Any) -> str:
    """A readable name for an option's type: ``float | None``, ``'smtp' | 'imap'``, ``path``."""
    import pathlib
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is not None:
        inner = ", ".join(type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return "path"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def describe_options(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The fields of an options model: name, type, default, description."""
    fields = []
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append(
            {
                "name": name,
                "type": type_name(info.annotation),
                "default": default,
                "required": info.is_required(),
                "description": info.description or "",
            }
        )
    return fields


def default_manager(*, autoload: bool = True, plugins: Iterable[object] = ()) -> PluginManager:
    """A manager with the installed plugins loaded and ``plugins`` registered.

    The installed plugins are found once per process (blocking: call it from a
    worker thread in async code); see :func:`forget_discovered_plugins`.
    """
    manager = PluginManager()
    manager.load_entrypoints(autoload=autoload, cached=True)
    for plugin in plugins:
        manager.register(plugin)
    return manager
