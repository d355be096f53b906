"""What an embedding call takes, checked before it runs: its keyword
arguments, and its targets (URLs, :class:`Check` objects, ready
:class:`~anyprobe.Target` objects or the :class:`Prepared` result of
:func:`prepare`), validated without blocking the caller's event loop.

The calls themselves (``stream()``, ``check()``, ``check_sync()``) are in
:mod:`anyprobe._api`, which re-exports the public names of this module.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._defaults import DEFAULT_TIMEOUT
from ._errors import OptionsError, PluginError, TargetError, did_you_mean
from ._model import Target

if TYPE_CHECKING:
    from ._manager import PluginManager
    from ._reporter import Reporter
    from ._targets import TargetList

__all__ = [
    "Check",
    "Prepared",
    "ReporterSpec",
    "Targets",
    "prepare",
    "resolve_reporters",
]

#: Most retries a check may have (as in a config file).
MAX_RETRIES = 10
#: Longest stretch (seconds) target validation runs before yielding to the loop.
VALIDATION_SLICE = 0.005


@dataclass(frozen=True, slots=True)
class Check:
    """One check with its own settings: the fields of a config file's ``[[check]]``.

    >>> anyprobe.Check("https://api.example.com/health", name="api",
    ...                options={"expect_status": [200]}, labels={"team": "payments"})

    ``options`` are the probe's options (merged over the run's ``options=``),
    ``labels`` are added to the run's, ``timeout`` and ``retries`` override
    the run's. Validated exactly like a config file's check when the run starts.
    """

    url: str
    _: KW_ONLY
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    retries: int | None = None


class Prepared(NamedTuple):
    """What :func:`prepare` returns: pass it as the targets of ``check()`` or ``stream()``."""

    manager: PluginManager
    targets: Sequence[Target]


TargetItem: TypeAlias = str | Check | Target
Targets: TypeAlias = TargetItem | Prepared | Iterable[TargetItem]
ReporterSpec: TypeAlias = (
    "Reporter[Any] | str | tuple[str, Mapping[str, Any]] | tuple[str, Reporter[Any]]"
)

#: The modules a run needs beyond this one. Importing them takes a few hundred
#: milliseconds (pydantic's models are built at import), so the first call
#: imports them in a worker thread instead of on the caller's event loop.
_RUN_MODULES = ("anyprobe._config", "anyprobe._run", "anyprobe._targets")


def _import_run_modules() -> None:
    import importlib

    for name in _RUN_MODULES:
        importlib.import_module(name)


async def _run_modules_imported() -> None:
    if not all(name in sys.modules for name in _RUN_MODULES):
        # Abandoned if the caller gives up: the imports finish for the next call.
        await anyio.to_thread.run_sync(_import_run_modules, abandon_on_cancel=True)


# -- argument checks ---------------------------------------------------------------


def _seconds(name: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _count(name: str, value: object, *, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _is_reporter(value: object) -> bool:
    if "anyprobe._reporter" not in sys.modules:
        return False  # no Reporter class exists yet, so no instance of one either
    from ._reporter import Reporter

    return isinstance(value, Reporter)


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool; TypeError naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r:.40}")
    return value


def _check_mapping(name: str, value: object, *, str_values: bool) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: keys must be strings, got {type(key).__name__}: {key!r:.40}")
        if str_values and not isinstance(item, str):
            raise TypeError(f"{name}[{key!r}] must be a str, got {type(item).__name__}")


def _check_reporter_specs(reporters: Iterable[ReporterSpec]) -> list[ReporterSpec]:
    if isinstance(reporters, str) or _is_reporter(reporters):
        reporters = [cast("ReporterSpec", reporters)]
    if not isinstance(reporters, Iterable):
        raise TypeError(
            "reporters must be a list of reporters (instances, names or (name, options) "
            f"pairs), got {type(reporters).__name__}"
        )
    specs = list(reporters)
    for index, spec in enumerate(specs):
        ok = (
            isinstance(spec, str)
            or _is_reporter(spec)
            or (
                isinstance(spec, tuple)
                and len(spec) == 2
                and isinstance(spec[0], str)
                and (isinstance(spec[1], Mapping) or _is_reporter(spec[1]))
            )
        )
        if not ok:
            raise TypeError(
                f"reporters[{index}]: expected a Reporter instance, a reporter name "
                f"or a (name, options) pair, got {type(spec).__name__}: {spec!r:.80}"
            )
    return specs


def resolve_reporters(
    manager: PluginManager, reporters: Iterable[ReporterSpec]
) -> list[tuple[str, Reporter[Any]]]:
    """``reporters`` as ``(name, instance)`` pairs; the one way every call takes them.

    Each is a :class:`~anyprobe.Reporter` instance, the name of an installed
    reporter (``"jsonl"``) or a name with its options
    (``("jsonl", {"path": "out.jsonl"})``). An unknown name or a bad option
    raises :class:`~anyprobe.OptionsError`; anything else ``TypeError``.
    """
    from ._config import make_reporter
    from ._reporter import Reporter

    made: list[tuple[str, Reporter[Any]]] = []
    for spec in _check_reporter_specs(reporters):
        if isinstance(spec, Reporter):
            made.append((getattr(spec, "name", "") or type(spec).__name__, spec))
        elif isinstance(spec, str):
            made.append(make_reporter(manager, spec, {}))
        elif isinstance(spec[1], Reporter):
            made.append((spec[0], spec[1]))
        else:
            made.append(make_reporter(manager, spec[0], spec[1]))
    return made


@dataclass(frozen=True)
class CallSettings:
    """The keyword arguments of a call, checked when it is made."""

    options: Mapping[str, Any] | None = None
    labels: Mapping[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0
    concurrency: int | None = None
    per_host: int | None = None
    limiter: anyio.CapacityLimiter | None = None
    explain: bool = False
    plugins: tuple[object, ...] = ()
    manager: PluginManager | None = None
    reporters: tuple[ReporterSpec, ...] = ()
    run_timeout: float | None = None
    watchdog: bool = False
    raise_on_reporter_failure: bool = False

    def __post_init__(self) -> None:
        _seconds("timeout", self.timeout)
        _count("retries", self.retries, low=0, high=MAX_RETRIES)
        _count("concurrency", self.concurrency, low=1)
        _count("per_host", self.per_host, low=1)
        _seconds("run_timeout", self.run_timeout, optional=True)
        _check_mapping("options", self.options, str_values=False)
        _check_mapping("labels", self.labels, str_values=True)
        for name in ("explain", "watchdog", "raise_on_reporter_failure"):
            check_flag(name, getattr(self, name))
        if self.limiter is not None and not isinstance(self.limiter, anyio.CapacityLimiter):
            raise TypeError(
                f"limiter must be an anyio.CapacityLimiter, got {type(self.limiter).__name__}"
            )
        if self.manager is not None and not _is_plugin_manager(self.manager):
            raise TypeError(
                f"manager must be an anyprobe.PluginManager, got {type(self.manager).__name__}"
            )
        if self.manager is not None and self.plugins:
            raise TypeError(
                "plugins= is ignored when manager= is given: register them on the manager "
                "(manager.register(module)) instead"
            )


def _is_plugin_manager(value: object) -> bool:
    if "anyprobe._manager" not in sys.modules:
        return False
    from ._manager import PluginManager

    return isinstance(value, PluginManager)


def call_settings(
    targets: object,
    *,
    plugins: Iterable[object] = (),
    reporters: Iterable[ReporterSpec] = (),
    **kwargs: Any,
) -> CallSettings:
    if isinstance(plugins, str) or not isinstance(plugins, Iterable):
        raise TypeError(f"plugins must be a list of plugin modules, got {type(plugins).__name__}")
    settings = CallSettings(
        plugins=tuple(plugins), reporters=tuple(_check_reporter_specs(reporters)), **kwargs
    )
    if isinstance(targets, Prepared):
        if settings.manager is not None or settings.plugins:
            raise TypeError(
                "targets from prepare() carry their plugin manager: pass plugins= or manager= "
                "to prepare() instead"
            )
        # Prepared targets were validated with their settings: others here would be ignored.
        given = [
            name
            for name, value in (
                ("options", settings.options),
                ("labels", settings.labels),
                ("timeout", settings.timeout != DEFAULT_TIMEOUT),
                ("retries", settings.retries != 0),
            )
            if value
        ]
        if given:
            raise TypeError(
                f"targets from prepare() carry their settings: pass {', '.join(given)} "
                "to prepare() instead"
            )
    _target_source(targets)  # refuses a wrong type at once
    return settings


# -- targets -------------------------------------------------------------------------


def _target_source(targets: object) -> Iterable[object]:
    if isinstance(targets, str | Check | Target):
        return [targets]  # one target
    if isinstance(targets, Prepared):
        return targets.targets
    if isinstance(targets, bytes | bytearray | Mapping) or not isinstance(targets, Iterable):
        raise TypeError(
            "targets must be a URL, an anyprobe.Check or an iterable of them, "
            f"got {type(targets).__name__}"
        )
    return targets


_NO_OPTIONS: Mapping[str, Any] = {}


class _TargetBuilder:
    """Validates targets one at a time, as :func:`~anyprobe._targets.build_targets`
    and the config loader do, so that the caller can yield between them."""

    def __init__(self, manager: PluginManager, settings: CallSettings) -> None:
        self.manager = manager
        self.settings = settings
        from ._targets import KEEP_TARGETS, TargetFactory, TargetList

        self.keep = KEEP_TARGETS
        self.factory = TargetFactory(manager)
        self.shared = dict(settings.options or {})
        self.labels = dict(settings.labels or {})
        self.per_probe: dict[str, Mapping[str, Any]] = {}
        self.probes_used: set[str] = set()
        self.names: set[str] = set()
        # Plain URLs share their settings and are kept compact; one Check or
        # ready Target makes the list a plain list of Target objects.
        self.compact: TargetList | None = TargetList()
        self.plain: list[Target] = []

    def _shared_for(self, probe_name: str) -> Mapping[str, Any]:
        raw = self.per_probe.get(probe_name)
        if raw is None:
            from ._targets import options_for_probe

            raw = self.per_probe[probe_name] = options_for_probe(
                self.manager, probe_name, self.shared
            )
        return raw

    def add(self, index: int, item: object) -> None:
        if isinstance(item, str):
            target = self._from_url(item)
            if self.compact is not None:
                self.compact._add(target, self.keep)
                return
        elif isinstance(item, Check):
            target = self._from_check(item)
        elif isinstance(item, Target):
            target = item
        else:
            hint = " (use anyprobe.Check(url, options={...}))" if isinstance(item, tuple) else ""
            raise TypeError(
                f"targets[{index}]: expected a URL string, an anyprobe.Check or an "
                f"anyprobe.Target, got {type(item).__name__}{hint}"
            )
        for _ in self.to_plain():
            pass
        self.plain.append(target)

    def to_plain(self) -> Iterator[None]:
        """Turn the compact list into a plain one, pausing every 64 targets: past
        :data:`~anyprobe._targets.KEEP_TARGETS` each is rebuilt from its URL, which
        takes long enough for the caller to yield to the loop in between."""
        compact = self.compact
        if compact is None:
            return
        for start in range(0, len(compact), 64):
            self.plain.extend(compact[start : start + 64])
            yield
        self.compact = None

    def _from_url(self, text: str) -> Target:
        raw: Mapping[str, Any] = _NO_OPTIONS
        if self.shared:
            probe = self.manager.probe_for_scheme(text.partition(":")[0])
            if probe is not None:
                raw = self._shared_for(probe.name)
        try:
            target = self.factory.build(
                text,
                options=raw,
                labels=self.labels,
                timeout=self.settings.timeout,
                retries=self.settings.retries,
            )
        except OptionsError as exc:
            from ._targets import redact_url

            raise exc.located(source="options", check=redact_url(text)) from None
        self.probes_used.add(target.probe)
        return target

    def _from_check(self, check: Check) -> Target:
        from pydantic import ValidationError

        from ._config import CheckSettings
        from ._targets import options_error, redact_url, split_url

        url = check.url
        label = (
            repr(check.name) if isinstance(check.name, str) and check.name else redact_url(str(url))
        )
        core: dict[str, Any] = {
            "url": url,
            "labels": dict(check.labels) if isinstance(check.labels, Mapping) else check.labels,
        }
        for key in ("name", "timeout", "retries"):
            if getattr(check, key) is not None:
                core[key] = getattr(check, key)
        try:
            checked = CheckSettings.model_validate(core)
        except ValidationError as exc:
            error = options_error(exc, CheckSettings, what="a check")
            raise OptionsError(
                error.message, source="targets", check=label, field=error.field
            ) from None
        if not isinstance(check.options, Mapping):
            raise OptionsError(
                f"must be a mapping, got {type(check.options).__name__}",
                source="targets",
                check=label,
                field="options",
            )
        if checked.name is not None:
            if checked.name in self.names:
                raise OptionsError(
                    "duplicate check name", source="targets", check=label, field="name"
                )
            self.names.add(checked.name)
        try:
            probe = self.manager.probe_for_scheme(split_url(url).scheme)
            raw: dict[str, Any] = {}
            if probe is not None:
                known = probe.Options.model_fields
                for key in check.options:
                    if key not in known:
                        raise OptionsError(
                            f"unknown option for probe {probe.name}{did_you_mean(key, known)}",
                            field=f"options.{key}",
                        )
                raw = {**self._shared_for(probe.name), **check.options}
            target = self.factory.build(
                url,
                name=checked.name,
                options=raw,
                labels={**self.labels, **checked.labels},
                timeout=checked.timeout or self.settings.timeout,
                retries=checked.retries if checked.retries is not None else self.settings.retries,
            )
        except (TargetError, OptionsError) as exc:
            if isinstance(exc, TargetError):
                error_field: str | None = "url"
            elif exc.field and not exc.field.startswith("options"):
                error_field = f"options.{exc.field}"
            else:
                error_field = exc.field
            raise type(exc)(exc.message, source="targets", check=label, field=error_field) from None
        self.probes_used.add(target.probe)
        return target

    def finish(self) -> Sequence[Target]:
        if self.shared:
            from ._targets import check_shared_options

            check_shared_options(self.manager, self.shared, self.probes_used, what="options")
        return self.compact if self.compact is not None else self.plain


def _manager_for(plugins: Sequence[object]) -> PluginManager:
    """A manager with the installed plugins and ``plugins``: blocking, for a worker thread."""
    from ._manager import default_manager

    manager = default_manager()
    names = []
    for plugin in plugins:
        try:
            names.append(manager.register(plugin))
        except PluginError as exc:
            raise PluginError(f"plugins: {exc}") from exc
        if not manager.hook_manager.get_hookcallers(plugin):
            raise PluginError(f"plugins: {names[-1]!r} has no anyprobe hook implementation")
    infos = {info.name: info for info in manager.plugins}  # calls the hooks
    for name in names:
        if infos[name].error:
            raise PluginError(f"plugins: {name!r} is broken: {infos[name].error}")
    return manager


def prepare(
    targets: Targets,
    *,
    manager: PluginManager | None = None,
    plugins: Iterable[object] = (),
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
) -> Prepared:
    """Validate ``targets`` now, for a run later: ``check(prepare(targets))``.

    Synchronous (it blocks while it loads plugins and validates): call it at
    start-up, or through ``anyio.to_thread.run_sync``. Returns a
    :class:`Prepared` ``(manager, targets)``. Raises
    :class:`~anyprobe.UsageError` (``TargetError``, ``OptionsError``) for the
    first bad target, ``TypeError``/``ValueError`` for a bad argument.
    """
    settings = call_settings(
        targets,
        manager=manager,
        plugins=plugins,
        options=options,
        labels=labels,
        timeout=timeout,
        retries=retries,
    )
    if isinstance(targets, Prepared):
        return targets
    built_manager = manager or _manager_for(settings.plugins)
    builder = _TargetBuilder(built_manager, settings)
    for index, item in enumerate(_target_source(targets)):
        builder.add(index, item)
    return Prepared(built_manager, builder.finish())


async def prepare_async(targets: Targets, settings: CallSettings) -> Prepared:
    """:func:`prepare` without blocking the loop: plugin discovery in a worker
    thread, validation in slices of at most :data:`VALIDATION_SLICE` seconds."""
    await _run_modules_imported()
    if isinstance(targets, Prepared):
        return targets
    manager = settings.manager
    if manager is None:
        # Abandoned if the caller gives up (a short deadline on the first call):
        # discovery goes on in its thread and is kept for the next call.
        manager = await anyio.to_thread.run_sync(
            _manager_for, settings.plugins, abandon_on_cancel=True
        )
    builder = _TargetBuilder(manager, settings)
    slice_end = time.perf_counter() + VALIDATION_SLICE
    for index, item in enumerate(_target_source(targets)):
        if builder.compact is not None and not isinstance(item, str):
            for _ in builder.to_plain():
                if time.perf_counter() > slice_end:
                    await anyio.lowlevel.checkpoint()
                    slice_end = time.perf_counter() + VALIDATION_SLICE
        builder.add(index, item)
        if index % 64 == 63 and time.perf_counter() > slice_end:
            await anyio.lowlevel.checkpoint()
            slice_end = time.perf_counter() + VALIDATION_SLICE
    return Prepared(manager, builder.finish())
