"""The embedding API: run checks from your own asyncio or trio program.

    import anyprobe

    async def main():
        async with anyprobe.stream(["tcp://127.0.0.1:22", "https://example.com"]) as results:
            async for result in results:
                print(result.name, result.status.value, result.summary)
        print(results.summary.describe())

``await anyprobe.check(targets)`` returns every result (``.summary`` on the
list); ``anyprobe.check_sync(targets)`` does the same from a script without an
event loop. ``stream()`` only works inside ``async with``: an async generator
that owns a task group cannot be left early safely (PEP 789).

Nothing here blocks the caller's event loop (plugin discovery runs once per
process, in a worker thread; a long target list is validated in slices that
yield to the loop), prints, or changes the process (its open-file limit, its
threads). Each call owns its plugin manager, limits and streams; the one
thing shared between calls is the list of installed plugins
(:func:`~anyprobe.forget_discovered_plugins` makes the next call look again).
The reference, with what each call raises, is docs/embedding.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._defaults import DEFAULT_TIMEOUT
from ._errors import OptionsError, PluginError, ReporterError, TargetError, did_you_mean
from ._model import Result, RunSummary, Target

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from ._manager import PluginManager
    from ._reporter import Reporter
    from ._run import Run
    from ._targets import TargetList

__all__ = [
    "Check",
    "Prepared",
    "Results",
    "RunStream",
    "check",
    "check_sync",
    "prepare",
    "resolve_reporters",
    "stream",
]

#: Most retries a check may have (as in a config file).
MAX_RETRIES = 10
#: Longest stretch (seconds) target validation runs before yielding to the loop.
VALIDATION_SLICE = 0.005

USE_ASYNC_WITH = (
    "anyprobe.stream() must be entered first: "
    "`async with anyprobe.stream(targets) as results: async for result in results: ...`"
)


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


class Results(list[Result]):
    """The results of :func:`check` (a plain list of :class:`~anyprobe.Result`)
    with the run's :class:`~anyprobe.RunSummary` as ``summary``."""

    summary: RunSummary

    def __init__(self, results: Iterable[Result], summary: RunSummary) -> None:
        super().__init__(results)
        self.summary = summary


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


def _flag(name: str, value: object) -> bool:
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
class _Settings:
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
            _flag(name, getattr(self, name))
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


def _settings(
    targets: object,
    *,
    plugins: Iterable[object] = (),
    reporters: Iterable[ReporterSpec] = (),
    **kwargs: Any,
) -> _Settings:
    if isinstance(plugins, str) or not isinstance(plugins, Iterable):
        raise TypeError(f"plugins must be a list of plugin modules, got {type(plugins).__name__}")
    settings = _Settings(
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


class _TargetBuilder:
    """Validates targets one at a time, as :func:`~anyprobe._targets.build_targets`
    and the config loader do, so that the caller can yield between them."""

    def __init__(self, manager: PluginManager, settings: _Settings) -> None:
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
        probe = self.manager.probe_for_scheme(text.partition(":")[0])
        raw: Mapping[str, Any] = {}
        if probe is not None and self.shared:
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
    settings = _settings(
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


async def _prepare(targets: Targets, settings: _Settings) -> Prepared:
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


# -- running ------------------------------------------------------------------------


def _alone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` (groups nested in groups included), or None."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


class RunStream:
    """What :func:`stream` returns: enter it with ``async with``, then iterate it.

    ``summary`` is the run's :class:`~anyprobe.RunSummary` once the ``async
    with`` block has ended (None if the run was cancelled from outside).
    Leaving the block early (``break``, ``return``, an exception) stops the
    checks still running; results already finished still reach the reporters,
    and the block waits for them to finish.
    """

    def __init__(self, targets: Targets, settings: _Settings) -> None:
        self._targets: Targets | None = targets
        self._settings = settings
        self._state = "new"
        self._run: Run | None = None
        self._receive: MemoryObjectReceiveStream[Result] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._ended = False
        self._summary: RunSummary | None = None
        self.summary: RunSummary | None = None

    def __aiter__(self) -> RunStream:
        if self._state != "open":
            raise TypeError(USE_ASYNC_WITH)
        return self

    async def __anext__(self) -> Result:
        if self._state != "open" or self._receive is None:
            raise TypeError(USE_ASYNC_WITH)
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            self._ended = True
            raise StopAsyncIteration from None

    async def __aenter__(self) -> RunStream:
        if self._state != "new":
            raise RuntimeError("an anyprobe.stream() can be entered only once")
        self._state = "starting"
        settings = self._settings
        assert self._targets is not None
        manager, targets = await _prepare(self._targets, settings)
        self._targets = None
        from ._run import Run

        concurrency = settings.concurrency
        if concurrency is None:
            from ._scheduler import DEFAULT_CONCURRENCY, max_safe_concurrency

            # Lowered quietly: the caller asked for no number, so a warning
            # would only be noise on every call (a 256-file limit is common).
            concurrency = min(DEFAULT_CONCURRENCY, max_safe_concurrency())
        run = Run(
            targets,
            manager,
            resolve_reporters(manager, settings.reporters),
            concurrency=concurrency,
            per_host=settings.per_host,
            limiter=settings.limiter,
            explain=settings.explain,
            watchdog=settings.watchdog,
            raise_file_limit=False,
        )
        self._run = run
        # A missing package is one error here, before any task starts.
        await run.load_dependencies()
        self._receive = run.results()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._execute, run)
        self._state = "open"
        return self

    async def _execute(self, run: Run) -> None:
        run_timeout = self._settings.run_timeout
        if run_timeout is None:
            self._summary = await run.execute()
            return

        async def interrupt_when_late() -> None:
            await anyio.sleep(run_timeout)
            run.interrupt(f"run_timeout ({run_timeout:g} s)")

        async with anyio.create_task_group() as timer:
            timer.start_soon(interrupt_when_late)
            self._summary = await run.execute()
            timer.cancel_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._task_group is not None and self._run is not None
        assert self._receive is not None
        self._state = "closed"
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        if not self._ended and not cancelled:
            # Left early (break, return, an exception): stop the checks; what
            # finished still reaches the reporters.
            self._run.interrupt("the caller left the stream")
        self._receive.close()
        try:
            if cancelled:
                await self._task_group.__aexit__(exc_type, exc, traceback)
            else:
                # The caller's own exception is not the run's: keep it out of
                # the task group, so that it reaches the caller as itself.
                await self._task_group.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            inner = _alone(group)
            if inner is None:
                raise
            raise inner from None
        finally:
            self._task_group = None
        if self._summary is not None:
            broken = tuple(
                f"plugin {info.name} is broken: {info.error}" for info in self._run.manager.broken
            )
            self.summary = dataclasses.replace(self._summary, broken_plugins=broken)
        if (
            exc is None
            and self.summary is not None
            and self.summary.reporter_failures
            and self._settings.raise_on_reporter_failure
        ):
            raise ReporterError("; ".join(self.summary.reporter_failures), summary=self.summary)
        return False

    def _input_order(self, results: list[Result]) -> list[Result]:
        assert self._run is not None
        positions: dict[tuple[str, str], deque[int]] = {}
        for index, target in enumerate(self._run.targets):
            positions.setdefault((target.name, target.display_url), deque()).append(index)
        return sorted(results, key=lambda r: positions[(r.name, r.target)].popleft())


def stream(
    targets: Targets,
    *,
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    explain: bool = False,
    plugins: Iterable[object] = (),
    manager: PluginManager | None = None,
    reporters: Iterable[ReporterSpec] = (),
    run_timeout: float | None = None,
    watchdog: bool = False,
    raise_on_reporter_failure: bool = False,
) -> RunStream:
    """Check ``targets``, giving each result as it completes::

        async with anyprobe.stream(targets) as results:
            async for result in results:
                ...
        results.summary

    Arguments are checked here (``TypeError``, ``ValueError``); the targets
    are validated when the block is entered, before the first check starts
    (:class:`~anyprobe.UsageError`). See docs/embedding.md for each argument.
    """
    settings = _settings(
        targets,
        options=options,
        labels=labels,
        timeout=timeout,
        retries=retries,
        concurrency=concurrency,
        per_host=per_host,
        limiter=limiter,
        explain=explain,
        plugins=plugins,
        manager=manager,
        reporters=reporters,
        run_timeout=run_timeout,
        watchdog=watchdog,
        raise_on_reporter_failure=raise_on_reporter_failure,
    )
    return RunStream(targets, settings)


async def check(
    targets: Targets,
    *,
    ordered: bool = False,
    raise_on_reporter_failure: bool = False,
    **kwargs: Any,
) -> Results:
    """Check ``targets`` and return every result, with the run's summary as
    ``results.summary``.

    Results come in completion order, or in the order of ``targets`` with
    ``ordered=True``. Takes the same keyword arguments as :func:`stream`.
    """
    _flag("ordered", ordered)
    _flag("raise_on_reporter_failure", raise_on_reporter_failure)
    async with stream(targets, **kwargs) as results:
        collected = [result async for result in results]
    if ordered:
        collected = results._input_order(collected)
    assert results.summary is not None
    done = Results(collected, results.summary)
    if raise_on_reporter_failure and done.summary.reporter_failures:
        raise ReporterError(
            "; ".join(done.summary.reporter_failures), summary=done.summary, results=done
        )
    return done


def _running_loop() -> str | None:
    """The async library running in this thread, if any."""
    import sniffio

    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        pass
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio"


def check_sync(targets: Targets, *, backend: str = "asyncio", **kwargs: Any) -> Results:
    """:func:`check` for a script without an event loop: starts one on ``backend``
    (``"asyncio"`` or ``"trio"``) for the call. Inside a running event loop it
    raises ``RuntimeError``: ``await anyprobe.check(...)`` there instead."""
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
    library = _running_loop()
    if library is not None:
        raise RuntimeError(
            f"check_sync() cannot run inside a running {library} event loop: use "
            "`await anyprobe.check(...)` there (or run check_sync in a worker thread)"
        )
    _flag("ordered", kwargs.get("ordered", False))
    _settings(targets, **{k: v for k, v in kwargs.items() if k != "ordered"})

    async def main() -> Results:
        return await check(targets, **kwargs)

    return anyio.run(main, backend=backend)
