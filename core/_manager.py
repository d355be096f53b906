"""The plugin manager: finds plugins, collects their probes and reporters.

Every run owns a :class:`PluginManager`; there is no global registry, so two
runs with different plugins can coexist in one process.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import threading
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._errors import PluginError
from ._hook_callers import CountingPluginManager, callers_alone
from ._probe import Probe
from ._reporter import Reporter

if TYPE_CHECKING:
    from pydantic import BaseModel

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

    Every hook is called through pluggy, so ``tryfirst``, ``trylast``,
    ``wrapper=True``/``hookwrapper=True`` and ``firstresult`` behave as pluggy
    documents them, with one addition: each plugin's implementation is called
    on its own, so one that raises marks its plugin broken and the others are
    still called (see :meth:`_call`).
    """

    def __init__(self) -> None:
        self.hook_manager: pluggy.PluginManager = CountingPluginManager(ENTRY_POINT_GROUP)
        self._dispatcher = _Dispatcher()
        self._add_hookspecs(hookspecs)
        self._calling: str | None = None  # the plugin whose implementation runs now
        # The callers :meth:`_call` and :meth:`_dispatch` make of each hook, kept
        # while no plugin is registered, unregistered, blocked or marked broken
        # (a caller made before would call a plugin removed since).
        self._callers: dict[str, pluggy.HookCaller] = {}
        self._each_callers: dict[str, list[tuple[str, pluggy.HookCaller]]] = {}
        self._callers_made_at = -1
        self._dispatched = False
        self._calls_under_way = 0  # calls made by _call, nested ones included
        self._infos: dict[str, PluginInfo] = {}
        self._probes: dict[str, Probe[Any]] = {}
        self._schemes: dict[str, str] = {}
        self._reporters: dict[str, type[Reporter[Any]]] = {}
        self._demo_services: list[Callable[..., Any]] = []
        # anyprobe's own plugins a run did not ask for (see load_entrypoints):
        # imported the first time something asks for what they may hold.
        self._deferred: list[str] = []
        self._collected = False
        self._demos_collected = False
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
        schemes: Iterable[str] | None = None,
        reporters: Iterable[str] | None = None,
    ) -> None:
        """Load anyprobe's own plugins, then third-party ones from the ``anyprobe``
        entry-point group.

        anyprobe's own plugins (:data:`BUILTIN_PLUGINS`) always load, from their
        modules, so a copy of anyprobe without package metadata (vendored, a
        zipapp) has them too. Third-party ones load unless ``autoload`` is false;
        ``only`` (or the ``ANYPROBE_LOAD_PLUGINS`` environment variable,
        comma-separated entry-point names, empty for none) restricts them to the
        names given. ``cached`` reuses what an earlier call in this process found
        (see :func:`forget_discovered_plugins`) instead of scanning the installed
        packages again.

        ``schemes`` and ``reporters`` (URL schemes and reporter names a run
        needs) import only those of anyprobe's own plugins that register them
        (:data:`BUILTIN_REGISTERS`), so that a ``tcp://`` check never imports
        the HTTP, DNS or SSH plugins. The others are imported the first time
        something asks for more: a scheme or reporter not found
        (:meth:`probe_for_scheme`, :meth:`reporter_type`), :attr:`plugins` or
        :attr:`demo_services`. Until then :attr:`probes`, :attr:`schemes`,
        :attr:`reporters` and :attr:`broken` hold what is loaded. Third-party
        plugins are imported all the same: what they register is only known
        once they are imported.
        """
        if only is None and LOAD_PLUGINS_ENV in os.environ:
            only = [n.strip() for n in os.environ[LOAD_PLUGINS_ENV].split(",") if n.strip()]
        wanted = frozenset(only) if only is not None else None
        builtins = BUILTIN_PLUGINS
        if schemes is not None or reporters is not None:
            builtins = builtins_for(schemes or (), reporters or ())
        if cached:
            found = _discovered(autoload, wanted, builtins)
        else:
            found = _discover(autoload, wanted, builtins)
        self._deferred.extend(
            m for m in BUILTIN_PLUGINS if m not in builtins and m not in self._deferred
        )
        self._add_found(found)

    def _add_found(self, found: Iterable[_Found]) -> None:
        for plugin in found:
            if plugin.info.name in self._infos:
                continue
            info = dataclasses.replace(plugin.info, probes=[], reporters=[])
            self._infos[info.name] = info
            if plugin.plugin is not None:
                try:
                    self.hook_manager.register(plugin.plugin, name=info.name)
                except pluggy.PluginValidationError as exc:
                    self._mark_broken(info.name, _one_line(exc))
            self._collected = False

    def _load_deferred(self) -> None:
        """Import anyprobe's own plugins that :meth:`load_entrypoints` left out."""
        if not self._deferred:
            return
        with self._collect_lock:
            modules, self._deferred = tuple(self._deferred), []
            self._add_found(_import_builtins(modules))
            # Load order decides who owns a scheme: anyprobe's own plugins first,
            # as when they load at once.
            builtin = [
                name
                for name, info in self._infos.items()
                if info.package == "anyprobe" and info.module in BUILTIN_PLUGINS
            ]
            builtin.sort(key=lambda name: BUILTIN_PLUGINS.index(self._infos[name].module or ""))
            rest = [name for name in self._infos if name not in builtin]
            self._infos = {name: self._infos[name] for name in (*builtin, *rest)}
            self._collected = False

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register ``plugin`` (a module or object with hook implementations)."""
        plugin_name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        if plugin_name in self._infos or plugin_name == _DISPATCHER_NAME:
            raise PluginError(f"a plugin named {plugin_name!r} is already registered")
        if not isinstance(plugin, Hashable):
            # pluggy keeps plugins in sets: a dataclass instance needs eq=False.
            raise PluginError(
                f"plugin {plugin_name!r} cannot be hashed, as pluggy needs: register a module,"
                " a class or an instance of a class without __eq__"
            )
        self._infos[plugin_name] = PluginInfo(
            name=plugin_name, module=getattr(plugin, "__name__", None)
        )
        try:
            self.hook_manager.register(plugin, name=plugin_name)
        except pluggy.PluginValidationError as exc:
            del self._infos[plugin_name]
            raise PluginError(_one_line(exc)) from None
        except ValueError:  # the same object under another name
            del self._infos[plugin_name]
            other = self.hook_manager.get_name(plugin)
            raise PluginError(
                f"plugin {plugin_name!r} is already registered as {other!r}"
            ) from None
        self._collected = False
        return plugin_name

    # -- calling hooks ---------------------------------------------------

    def _add_hookspecs(self, specs: ModuleType) -> None:
        """Add the hooks that ``specs`` declares, each to be called through :meth:`_call`."""
        self.hook_manager.add_hookspecs(specs)
        if self.hook_manager.is_registered(self._dispatcher):
            self.hook_manager.unregister(self._dispatcher)
        _add_dispatch(self._dispatcher, specs, self._dispatch)
        self.hook_manager.register(self._dispatcher, name=_DISPATCHER_NAME)

    def _call(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a hook through pluggy, keeping each plugin's failure its own.

        pluggy stops a call at the first implementation that raises. So the
        call pluggy makes here holds the wrappers and one implementation of
        anyprobe's, :meth:`_dispatch`, which calls every other plugin's
        implementation on its own, in pluggy's order. A wrapper thus runs once,
        around all of them. A wrapper that raises is marked broken; if it
        raised before the implementations ran, they are called without it.
        """
        hook: pluggy.HookCaller = getattr(self.hook_manager.hook, hook_name)
        self._check_callers()
        caller = self._callers.get(hook_name)
        left_out: set[object] | None = None
        for _ in range(len(hook.get_hookimpls()) + 1):  # one more try per wrapper, at most
            if caller is None:
                if left_out is None:
                    left_out = self._left_out(hook)
                caller = self.hook_manager.subset_hook_caller(hook_name, left_out)
                self._callers[hook_name] = caller
            self._dispatched = False
            self._calls_under_way += 1
            try:
                return caller(**kwargs)
            except pluggy.HookCallError:
                raise  # called with the wrong arguments: a bug in anyprobe
            except Exception as exc:
                if left_out is None:
                    left_out = self._left_out(hook)
                culprits = _wrappers_in_traceback(hook, exc, left_out)
                if not culprits:
                    raise  # no plugin's code raised: a bug in anyprobe
                for impl in culprits:
                    message = f"{hook_name} raised {type(exc).__name__}: {exc}"
                    self._mark_broken(impl.plugin_name, message)
                    left_out.add(impl.plugin)
                caller = None
                if self._dispatched:
                    return None
            finally:
                self._calls_under_way -= 1
        return None

    def _dispatch(self, hook_name: str, kwargs: Mapping[str, Any]) -> Any:
        """Call each plugin's implementation of ``hook_name`` on its own, in pluggy's order."""
        if not self._calls_under_way:
            # A call straight through ``hook_manager.hook``: pluggy calls every
            # implementation itself, as plain pluggy does.
            return None
        self._dispatched = True
        hook: pluggy.HookCaller = getattr(self.hook_manager.hook, hook_name)
        firstresult = bool(hook.spec and hook.spec.opts.get("firstresult"))
        self._check_callers()
        each = self._each_callers.get(hook_name)
        if each is None:
            each = self._each_callers[hook_name] = callers_alone(
                self.hook_manager, hook, skip=lambda impl: impl.plugin is self._dispatcher
            )
        for name, alone in each:
            if self._infos.setdefault(name, PluginInfo(name=name)).broken:
                continue
            self._calling = name
            try:
                result = alone(**kwargs)
            except Exception as exc:
                self._mark_broken(name, f"{hook_name} raised {type(exc).__name__}: {exc}")
                continue
            finally:
                self._calling = None
            if firstresult and result is not None:
                return result
        return None

    def _left_out(self, hook: pluggy.HookCaller) -> set[object]:
        """The plugins the call :meth:`_call` makes leaves out: every implementation
        but the wrappers (:meth:`_dispatch` calls them), and the broken plugins."""
        left_out = {
            impl.plugin
            for impl in hook.get_hookimpls()
            if impl.plugin is not self._dispatcher and not _is_wrapper(impl)
        }
        return left_out | self._broken_plugins()

    def _check_callers(self) -> None:
        """Forget the hook callers made before a plugin was registered, unregistered
        or blocked since (a plain pluggy manager in :attr:`hook_manager`: always)."""
        changes = getattr(self.hook_manager, "changes", None)
        if changes is None or changes != self._callers_made_at:
            self._forget_callers()
            self._callers_made_at = -1 if changes is None else changes

    def _forget_callers(self) -> None:
        self._callers.clear()
        self._each_callers.clear()

    def _broken_plugins(self) -> set[object]:
        broken = (self.hook_manager.get_plugin(i.name) for i in self._infos.values() if i.broken)
        return {plugin for plugin in broken if plugin is not None}

    def _mark_broken(self, plugin_name: str, message: str) -> None:
        info = self._infos.setdefault(plugin_name, PluginInfo(name=plugin_name))
        info.error = info.error or message
        self._forget_callers()  # the callers made before still call its wrappers
        log.debug("plugin %s: %s", plugin_name, message)

    # -- what plugins registered ----------------------------------------

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

        # What each plugin registers is kept apart, then taken in load order, so
        # that the order hooks are called in never decides who owns a scheme:
        # anyprobe's own plugins first, then entry points, then register().
        staged: dict[str, list[tuple[str, Any]]] = {}

        def registrar(hook_name: str, check: Callable[[Any], None]) -> Callable[[Any], None]:
            def register(item: Any) -> None:
                check(item)
                staged.setdefault(self._calling or "", []).append((hook_name, item))

            return register

        self._call("anyprobe_register_probes", register=registrar("probe", _check_probe))
        self._call("anyprobe_register_reporters", register=registrar("reporter", _check_reporter))
        self._demos_collected = False
        for name, info in list(self._infos.items()):
            if name in staged and not info.broken:
                try:
                    self._take(info, staged[name])
                except PluginError as exc:
                    self._mark_broken(name, str(exc))

    def _take(self, info: PluginInfo, items: list[tuple[str, Any]]) -> None:
        """Add what one plugin registered, all of it or (on a conflict) none of it."""
        probes: dict[str, Probe[Any]] = {}
        schemes: dict[str, str] = {}
        reporters: dict[str, type[Reporter[Any]]] = {}
        for kind, item in items:
            if kind == "probe":
                if item.name in self._probes or item.name in probes:
                    raise PluginError(f"probe name {item.name!r} is already registered")
                for scheme in (s.lower() for s in item.schemes):
                    owner = self._schemes.get(scheme) or schemes.get(scheme)
                    if owner:
                        raise PluginError(
                            f"scheme {scheme!r} is already handled by probe {owner!r}"
                        )
                    schemes[scheme] = item.name
                probes[item.name] = item()
            elif kind == "reporter":
                if item.name in self._reporters or item.name in reporters:
                    raise PluginError(f"reporter name {item.name!r} is already registered")
                reporters[item.name] = item
        self._probes.update(probes)
        self._schemes.update(schemes)
        self._reporters.update(reporters)
        info.probes.extend(probes)
        info.reporters.extend(reporters)

    def _collect_demos(self) -> None:
        """Call ``anyprobe_demo_services``: only ``anyprobe demo`` and the list of
        plugins need it (the modules behind it start servers, a run does not)."""
        self._collect()
        with self._collect_lock:
            if self._demos_collected:
                return
            self._demos_collected = True
            staged: dict[str, list[Callable[..., Any]]] = {}

            def register(item: Callable[..., Any]) -> None:
                staged.setdefault(self._calling or "", []).append(item)

            self._call("anyprobe_demo_services", register=register)
            self._demo_services.clear()
            for name, info in self._infos.items():
                if name in staged and not info.broken:
                    self._demo_services.extend(staged[name])

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin known, broken ones included, in load order."""
        self._load_deferred()
        self._collect_demos()
        return list(self._infos.values())

    @property
    def broken(self) -> list[PluginInfo]:
        """The plugins loaded so far that are broken."""
        self._collect()
        return [info for info in self._infos.values() if info.broken]

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
        self._load_deferred()
        self._collect_demos()
        return list(self._demo_services)

    def probe_for_scheme(self, scheme: str) -> Probe[Any] | None:
        """The probe of URL scheme ``scheme``, or None when no plugin handles it."""
        name = self.schemes.get(scheme.lower())
        if name is None and self._deferred:
            self._load_deferred()
            name = self.schemes.get(scheme.lower())
        return self._probes[name] if name else None

    def reporter_type(self, name: str) -> type[Reporter[Any]] | None:
        """The reporter type called ``name``, or None when no plugin registers it."""
        found = self.reporters.get(name)
        if found is None and self._deferred:
            self._load_deferred()
            found = self.reporters.get(name)
        return found

    def call_firstresult(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` hook (``anyprobe_metrics_registry``): the first
        answer that is not None, or None when no plugin answers. An
        implementation that raises marks its plugin broken; the next one answers."""
        self._collect()
        return self._call(hook_name, **kwargs)

    def call_lifecycle(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook (``anyprobe_run_started`` ...), isolating failures."""
        self._collect()
        self._call(hook_name, **kwargs)


_DISPATCHER_NAME = "anyprobe:dispatch"


class _Dispatcher:
    """anyprobe's own implementation of every hook (see :func:`_add_dispatch`)."""


def _add_dispatch(
    dispatcher: _Dispatcher, specs: ModuleType, dispatch: Callable[[str, Mapping[str, Any]], Any]
) -> None:
    """Give ``dispatcher`` one implementation per hook in ``specs``, each handing
    its arguments to ``dispatch(hook_name, kwargs)``."""
    for name, spec in inspect.getmembers(specs, inspect.isfunction):
        if not hasattr(spec, f"{ENTRY_POINT_GROUP}_spec"):
            continue
        argnames = tuple(inspect.signature(spec).parameters)
        # pluggy reads an implementation's argument names from its code (1.7)
        # or its signature (1.6) and passes them by position: a function with
        # the spec's own parameters satisfies both.
        params = ", ".join(argnames)
        mapping = ", ".join(f"{arg!r}: {arg}" for arg in argnames)
        namespace: dict[str, Any] = {"dispatch": dispatch}
        # The names come from anyprobe's own hookspecs, never from input.
        exec(
            f"def {name}({params}):\n    return dispatch({name!r}, {{{mapping}}})\n",
            namespace,
        )
        implementation = namespace[name]
        setattr(dispatcher, name, hookspecs.hookimpl(implementation))


def _one_line(exc: pluggy.PluginValidationError) -> str:
    """pluggy's reason for refusing a plugin (an implementation that does not fit its
    hook, a wrapper that is not a generator) as one line: its first and last."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def _wrappers_in_traceback(
    hook: pluggy.HookCaller, exc: BaseException, left_out: set[object]
) -> list[pluggy.HookImpl]:
    """The wrappers of ``hook`` whose code is in ``exc``'s traceback (or its context's)."""
    wrappers = [i for i in hook.get_hookimpls() if _is_wrapper(i) and i.plugin not in left_out]
    codes: set[object] = set()
    seen: BaseException | None = exc
    for _ in range(10):  # the exception and what it was raised from, bounded
        if seen is None:
            break
        codes.update(frame.f_code for frame, _ in traceback.walk_tb(seen.__traceback__))
        seen = seen.__cause__ or seen.__context__
    found = [i for i in wrappers if getattr(i.function, "__code__", None) in codes]
    # A generator that breaks pluggy's protocol (returns before its yield, yields
    # twice) leaves no frame of its own: then every wrapper left is suspect.
    return found or wrappers


def _check_probe(probe_type: Any) -> None:
    if not (isinstance(probe_type, type) and issubclass(probe_type, Probe)):
        raise PluginError(f"{probe_type!r} is not a subclass of anyprobe.Probe")
    for attr in ("name", "schemes"):
        if not getattr(probe_type, attr, None):
            raise PluginError(f"probe {probe_type.__name__} has no {attr}")


def _check_reporter(reporter_type: Any) -> None:
    if not (isinstance(reporter_type, type) and issubclass(reporter_type, Reporter)):
        raise PluginError(f"{reporter_type!r} is not a subclass of anyprobe.Reporter")
    if not getattr(reporter_type, "name", None):
        raise PluginError(f"reporter {reporter_type.__name__} has no name")


@dataclass(frozen=True)
class _Found:
    """One plugin, imported: its plugin object, or ``info.error`` if it failed."""

    info: PluginInfo
    plugin: object | None


# anyprobe's own plugins, registered from these modules (as pytest registers its
# default plugins) so they load without package metadata; the entry points in
# pyproject.toml that name them are skipped.
BUILTIN_PLUGINS: tuple[str, ...] = tuple(
    f"anyprobe.plugins.{name}"
    for name in (
        "tcp",
        "http",
        "dns",
        "ssh",
        "udp",
        "ntp",
        "icmp",
        "grpc",
        "websocket",
        "rdap",
        "table",
        "jsonl",
        "junit",
        "prometheus",
        "nagios",
        "webhook",
        "csv",
        "markdown",
        "pushgateway",
        "email",
        "pagerduty",
        "opsgenie",
        "apprise",
    )
)


#: What each of anyprobe's own plugins registers: ``(schemes, reporters)`` by the
#: last part of its module's name. A run imports only the plugins it needs
#: (:meth:`PluginManager.load_entrypoints`); a plugin of :data:`BUILTIN_PLUGINS`
#: left out of this table is imported by every run. tests/test_cold_start.py
#: checks the table against what the plugins register.
BUILTIN_REGISTERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tcp": (("tcp", "tls"), ()),
    "http": (("http", "https"), ()),
    "dns": (("dns",), ()),
    "ssh": (("ssh",), ()),
    "udp": (("udp",), ()),
    "ntp": (("ntp",), ()),
    "icmp": (("icmp",), ()),
    "grpc": (("grpc", "grpcs"), ()),
    "websocket": (("ws", "wss"), ()),
    "rdap": (("rdap",), ()),
    "table": ((), ("table",)),
    "jsonl": ((), ("jsonl",)),
    "junit": ((), ("junit",)),
    "prometheus": ((), ("prometheus",)),
    "nagios": ((), ("nagios",)),
    "webhook": ((), ("webhook",)),
    "csv": ((), ("csv",)),
    "markdown": ((), ("markdown",)),
    "pushgateway": ((), ("pushgateway",)),
    "email": ((), ("email",)),
    "pagerduty": ((), ("pagerduty",)),
    "opsgenie": ((), ("opsgenie",)),
    "apprise": ((), ("apprise",)),
}


def builtins_for(schemes: Iterable[str], reporters: Iterable[str]) -> tuple[str, ...]:
    """The modules of anyprobe's own plugins a run with these URL schemes and
    reporters needs: those that register one of them, and those that do not
    say what they register."""
    schemes = {scheme.lower() for scheme in schemes}
    reporters = set(reporters)
    needed = []
    for module in BUILTIN_PLUGINS:
        registers = BUILTIN_REGISTERS.get(module.rpartition(".")[2])
        if registers is None or schemes & {*registers[0]} or reporters & {*registers[1]}:
            needed.append(module)
    return tuple(needed)


def _import_plugin(info: PluginInfo, load: Callable[[], object]) -> _Found:
    try:
        return _Found(info, load())
    except Exception as exc:
        info.error = f"failed to load {info.module}: {type(exc).__name__}: {exc}"
        log.debug("plugin %s: %s", info.name, info.error)
        return _Found(info, None)


def _import_builtins(modules: Iterable[str]) -> list[_Found]:
    """anyprobe's own plugins of ``modules``, imported."""
    from . import __version__

    return [
        _import_plugin(
            PluginInfo(
                name=module.rpartition(".")[2],
                package="anyprobe",
                version=__version__,
                module=module,
            ),
            lambda module=module: importlib.import_module(module),  # type: ignore[misc]
        )
        for module in modules
    ]


def _discover(
    autoload: bool, wanted: frozenset[str] | None, builtins: tuple[str, ...] = BUILTIN_PLUGINS
) -> list[_Found]:
    """anyprobe's own plugins of ``builtins``, then the installed ones (slow:
    blocking I/O)."""
    # anyprobe's own plugins first: a third-party one cannot take their schemes.
    loaded = _import_builtins(builtins)
    if not autoload:
        return loaded
    # Every built-in name, loaded or not: an entry point of that name is one of
    # anyprobe's own (pyproject.toml names them all) or would shadow one.
    names = {module.rpartition(".")[2] for module in BUILTIN_PLUGINS}
    from ._entry_scan import only_known_entry_points

    if only_known_entry_points(
        ENTRY_POINT_GROUP, lambda name, module: module in BUILTIN_PLUGINS or name in names
    ):
        return loaded  # no third-party plugin: importlib.metadata is not needed
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.module in BUILTIN_PLUGINS or ep.name in names:
            continue
        if wanted is not None and ep.name not in wanted:
            continue
        names.add(ep.name)
        info = PluginInfo(
            name=ep.name,
            package=ep.dist.name if ep.dist else None,
            version=ep.dist.version if ep.dist else None,
            module=ep.value,
        )
        loaded.append(_import_plugin(info, ep.load))
    return loaded


_discovery_lock = threading.Lock()
_discovery: dict[tuple[bool, frozenset[str] | None, tuple[str, ...]], list[_Found]] = {}


def _discovered(
    autoload: bool, wanted: frozenset[str] | None, builtins: tuple[str, ...] = BUILTIN_PLUGINS
) -> list[_Found]:
    """:func:`_discover` once per process and set of arguments, from any thread."""
    key = (autoload, wanted, builtins)
    with _discovery_lock:
        found = _discovery.get(key)
        if found is None:
            found = _discovery[key] = _discover(autoload, wanted, builtins)
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
