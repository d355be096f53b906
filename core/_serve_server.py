"""The state of an ``anyprobe serve`` server: its config, limits and metrics,
the ``/probe`` requests it runs and the scheduled checks of its config file.

:class:`ProbeServer` is what the ASGI app (:mod:`anyprobe._serve_app`) serves;
:mod:`anyprobe._serve` binds, serves and handles signals.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from ._config import Config, RunDefaults, load_config
from ._errors import OptionsError, TargetError, UsageError, did_you_mean
from ._exposition import TextExposition
from ._fanout import Fanout
from ._inputs import escape_controls
from ._manager import PluginManager
from ._model import Result, RunSummary, Status, Target
from ._probe import load_dependencies
from ._reporter import ReportContext, Reporter
from ._scheduler import HostLimits, Scheduler
from ._serve_config import Module, ServeTables, builtin_modules
from ._serve_disconnect import DisconnectWatcher
from ._serve_push import PushMonitor
from ._serve_security import AllowList, ListenerSecurity, valid_host_name
from ._shard import Shard
from ._store import HistoryStore, Record
from ._store_writer import open_history
from ._targets import TargetFactory, options_error
from .net import address_policy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._serve_workers import Workers

log = logging.getLogger("anyprobe.serve")

_CONTROL = re.compile(r"[\x00-\x20\x7f]")

DEFAULT_MODULE = "http_2xx"
#: Seconds taken off Prometheus' scrape timeout, so the answer arrives in time.
DEFAULT_TIMEOUT_OFFSET = 0.5
#: A probe's timeout when neither the module nor the scrape sets one, and the
#: most a scrape's timeout header may ask for (blackbox_exporter's cap).
FALLBACK_TIMEOUT = 120.0
#: Scheduled checks started a second when a config's checks start: 10,000
#: checks start over 10 s, then each keeps its place in its interval.
START_RATE = 1000.0
#: Seconds in-flight probes get to finish after SIGTERM before they are cancelled.
DEFAULT_GRACE = 10.0
#: Seconds after a second SIGTERM before serving is cancelled outright.
ABORT_WAIT = 5.0
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: /probe targets kept parsed (:meth:`ProbeServer.prepare`); past it, the lot is dropped.
TARGETS_KEPT = 4096


def probe_timeout(module_timeout: float | None, scrape_header: str | None, offset: float) -> float:
    """The probe's timeout: the smaller of the module's and the scrape's
    (the header minus ``offset``). The header never raises it above the
    module's timeout, or :data:`FALLBACK_TIMEOUT` (120 s) for a module without one.

    Raises ValueError for a header that is not a positive finite number of seconds.
    """
    budget: float | None = None
    if scrape_header is not None:
        scrape = float(scrape_header)
        if not math.isfinite(scrape) or scrape <= 0:
            raise ValueError(scrape_header)
        # A scrape timeout shorter than the offset is used whole rather than refused.
        budget = scrape - offset if scrape > offset else scrape
    cap = module_timeout or FALLBACK_TIMEOUT
    return min(budget, cap) if budget else cap


# -- the server's state ---------------------------------------------------------


class Rejected(Exception):
    """A /probe request answered with an error status instead of a probe."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class _Metrics:
    """The server's own metrics, in a registry of its own (no global state)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            gc_collector,
            platform_collector,
            process_collector,
        )

        self.registry = registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
        self.probes = Counter(
            "anyprobe_probes",
            "Probes run for /probe, by module and result (success or failure).",
            ["module", "result"],
            registry=registry,
        )
        self.durations = Histogram(
            "anyprobe_probe_duration_seconds",
            "How long /probe's probes took, by module.",
            ["module"],
            registry=registry,
        )
        self.errors = Counter(
            "anyprobe_probe_errors",
            "Failed /probe probes by module and error type (ConnectError, TimeoutError...).",
            ["module", "error"],
            registry=registry,
        )
        self.rejected = Counter(
            "anyprobe_probe_requests_rejected",
            "/probe requests answered without a probe, by reason (bad_request, "
            "unknown_module, not_allowed, busy, unauthorized, disconnected).",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "anyprobe_probes_in_flight",
            "Probes running now (/probe and scheduled).",
            registry=registry,
        )
        self.waiting = Gauge(
            "anyprobe_probes_waiting", "/probe requests waiting for a free slot.", registry=registry
        )
        self.reload_ok = Gauge(
            "anyprobe_config_last_reload_successful",
            "1 when the last config (re)load succeeded.",
            registry=registry,
        )
        self.reload_time = Gauge(
            "anyprobe_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully, as a Unix timestamp.",
            registry=registry,
        )
        self.scheduled = Counter(
            "anyprobe_scheduled_checks",
            "Runs of the config's scheduled checks, by status.",
            ["status"],
            registry=registry,
        )

        # Each module's children of the counters above, looked up once.
        self._children: dict[tuple[str, bool], tuple[Any, Any]] = {}

    def probe_done(self, module: str, result: Result) -> None:
        """Count one /probe probe of ``module``, its duration and its error."""
        success = result.status in (Status.OK, Status.WARNING)
        children = self._children.get((module, success))
        if children is None:
            children = self._children[module, success] = (
                self.probes.labels(module, "success" if success else "failure"),
                self.durations.labels(module),
            )
        children[0].inc()
        children[1].observe(result.duration)
        if not success and result.error is not None:
            self.errors.labels(module, result.error.type).inc()

    def shard_info(self, shard: Shard) -> None:
        """``anyprobe_shard_info{shard, shards} 1``: which shard this replica runs."""
        from prometheus_client import Gauge

        info = Gauge(
            "anyprobe_shard_info",
            "The shard of the config's checks this replica runs (serve --shard I/N).",
            ["shard", "shards"],
            registry=self.registry,
        )
        info.labels(str(shard.index), str(shard.count)).set(1)


class ProbeServer:
    """What the app serves: the config, the limits, the latest scheduled results.

    ``concurrency`` bounds probes running at once (``/probe`` and scheduled
    checks share it); ``max_waiting`` bounds ``/probe`` requests waiting for a
    slot, beyond which they get 503 at once.
    """

    def __init__(
        self,
        manager: PluginManager,
        config: Config,
        *,
        config_path: str | None = None,
        concurrency: int = 100,
        max_waiting: int | None = None,
        timeout_offset: float = DEFAULT_TIMEOUT_OFFSET,
        extra_allow: Sequence[str] = (),
        shard: Shard | None = None,
    ) -> None:
        self.manager = manager
        self.config_path = config_path
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.concurrency = concurrency
        self.max_waiting = concurrency if max_waiting is None else max_waiting
        self.timeout_offset = timeout_offset
        self.extra_allow = AllowList(extra_allow)
        self.metrics = _Metrics()
        #: The text format writer, its families' header lines kept (anyprobe._exposition).
        self.exposition = TextExposition()
        self.resources: dict[Any, Any] = {}
        self.latest: dict[str, Result] = {}
        self._waiting = 0
        self._checks_changed = anyio.Event()
        self._stopping = False
        self._requests: set[anyio.CancelScope] = set()
        self._on_result: Callable[[Target, Result], Awaitable[None]] = self._no_reporters
        self.aborting = False
        #: With ``--shard I/N``: this replica runs only the checks it owns.
        self.shard = shard
        if shard is not None:
            self.metrics.shard_info(shard)
        self.push = PushMonitor(self)
        #: Watches slow /probe requests for their client's disconnect (run by serve()).
        self.disconnects = DisconnectWatcher()
        #: The listener's users and public parts (set by the app), or None.
        self.access: ListenerSecurity | None = None
        #: ``--workers N``: the parent's other processes (anyprobe._serve_workers), or None.
        self.workers: Workers | None = None
        #: In a worker: the app every request but /probe and /-/healthy goes to (the parent's).
        self.forward: Callable[..., Awaitable[None]] | None = None
        from ._alerts import AlertEngine

        #: The [[alert]]s and [[maintenance]] windows (anyprobe._alerts).
        self.alerts = AlertEngine(
            registry=self.metrics.registry, store=lambda: getattr(self, "store", None)
        )
        # The metrics come from a plugin (the built-in prometheus one): asked
        # once now, so that a server without one never starts.
        self._registry([], check_labels=False)
        self._install(config)
        #: The history's writer and store (anyprobe._store_writer), None without history.
        self.history = open_history(self, self.metrics.registry)
        self.store: HistoryStore | None = self.history.store if self.history else None

    # -- config --------------------------------------------------------------

    def _install(self, config: Config) -> None:
        tables = serve_tables(config)
        self.config = config
        # [defaults] per_host bounds the config's scheduled checks per host.
        self.host_limits = HostLimits(config.defaults.per_host)
        self.modules = tables.modules
        self.allow = tables.allow
        self.alerts.configure(
            tables.alerts, tables.maintenance, config.all_targets, tables.settings.connectivity
        )
        #: The allow-list in force: the config's and ``--allow-target``'s together.
        self.policy = self.allow + self.extra_allow
        self.factories = {name: TargetFactory(self.manager) for name in tables.modules}
        #: /probe's targets already built, by module, URL and timeout (see :meth:`prepare`).
        self._targets: dict[tuple[str, str, float], Target] = {}
        names = {target.name for target in config.all_targets}
        self.latest = {k: v for k, v in self.latest.items() if k in names}
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())

    async def reload(self) -> None:
        """Re-read the config file; on any error keep the running config and raise."""
        path = self.config_path
        try:
            config = await anyio.to_thread.run_sync(load_serve_config, path, self.manager)
            await load_dependencies(dependency_targets(config), self.manager.probes)
        except Exception:
            self.metrics.reload_ok.set(0)
            raise
        self._install(config)
        log.info("config reloaded from %s", path or "<built-in modules>")
        changed, self._checks_changed = self._checks_changed, anyio.Event()
        changed.set()
        if self.workers is not None:
            try:
                await self.workers.reload()
            except UsageError:
                self.metrics.reload_ok.set(0)
                raise

    # -- /probe --------------------------------------------------------------

    def allowed(self, host: str) -> bool:
        return self.policy.refusal(host, []) is None

    def prepare(
        self,
        params: Mapping[str, str],
        scrape_timeout: str | None,
    ) -> tuple[Module, Target]:
        """The module and target of a /probe request; raises Rejected."""
        text = params.get("target", "").strip()
        if not text:
            raise Rejected(400, "Target parameter is missing", "bad_request")
        if _CONTROL.search(text):
            raise Rejected(
                400, "Bad target: control characters or spaces in the target", "bad_request"
            )
        module_name = params.get("module") or DEFAULT_MODULE
        module = self.modules.get(module_name)
        if module is None:
            raise Rejected(
                400,
                f"Unknown module {module_name!r}{did_you_mean(module_name, self.modules)} "
                f"(known: {', '.join(sorted(self.modules)) or 'none'})",
                "unknown_module",
            )
        try:
            timeout = probe_timeout(module.timeout, scrape_timeout, self.timeout_offset)
        except ValueError:
            raise Rejected(
                400,
                f"{SCRAPE_TIMEOUT_HEADER}: {scrape_timeout!r} is not a positive number of seconds",
                "bad_request",
            ) from None
        url = text if "://" in text else f"{module.scheme}://{text}"
        # A scraper asks for the same targets again and again: each is parsed
        # and validated once per config (the allow-list is still asked below).
        key = (module.name, url, timeout)
        target = self._targets.get(key)
        if target is None:
            try:
                target = self.factories[module.name].build(
                    url, options=module.raw_options, timeout=timeout
                )
            except (TargetError, OptionsError) as exc:
                message = escape_controls(exc.message)
                raise Rejected(400, f"Bad target: {message}", "bad_request") from None
            if len(self._targets) >= TARGETS_KEPT:
                self._targets.clear()
            self._targets[key] = target
        if target.probe != module.probe:
            raise Rejected(
                400,
                f"Target {target.display_url} is for probe {target.probe}, "
                f"module {module.name} runs probe {module.probe}",
                "bad_request",
            )
        hostname = params.get("hostname")
        if hostname:
            if not valid_host_name(hostname):
                raise Rejected(400, f"Bad hostname: {hostname!r} is not a host name", "bad_request")
            target = self._with_hostname(target, module, hostname)
        if not self.allowed(target.host):
            raise Rejected(
                403, f"Target host {target.host!r} is not in allow_targets", "not_allowed"
            )
        return module, target

    def _with_hostname(self, target: Target, module: Module, hostname: str) -> Target:
        probe = self.manager.probes[module.probe]
        if "server_name" not in probe.Options.model_fields:
            raise Rejected(
                400, f"hostname= applies to probes with TLS (not {module.probe})", "bad_request"
            )
        try:
            options = probe.Options.model_validate({**module.raw_options, "server_name": hostname})
        except ValidationError as exc:
            error = options_error(exc, probe.Options, what=f"probe {probe.name}")
            raise Rejected(400, f"Bad hostname: {error.message}", "bad_request") from None
        return dataclasses.replace(target, options=options)

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[bool]:
        """Hold one of the probe slots, waiting until ``deadline`` at most;
        yields whether it had to wait."""
        limiter = self.limiter
        borrower = object()
        waited = False
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            waited = True
            if self._waiting >= self.max_waiting:
                raise Rejected(
                    503,
                    f"Busy: {self.concurrency} probes running and {self._waiting} waiting",
                    "busy",
                ) from None
            self._waiting += 1
            self.metrics.waiting.inc()
            acquired = False
            try:
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                    await limiter.acquire_on_behalf_of(borrower)
                    acquired = True
            finally:
                self._waiting -= 1
                self.metrics.waiting.dec()
            if not acquired:
                raise Rejected(503, "Busy: no probe slot freed in time", "busy") from None
        self.metrics.in_flight.inc()
        try:
            yield waited
        finally:
            self.metrics.in_flight.dec()
            limiter.release_on_behalf_of(borrower)

    async def probe(self, module: Module, target: Target, *, debug: bool = False) -> Result:
        """Run ``target``'s check for /probe (its timeout counts the wait for a slot)."""
        deadline = anyio.current_time() + target.timeout
        async with self.slot(deadline) as waited:
            if waited:
                remaining = round(deadline - anyio.current_time(), 3)
                target = dataclasses.replace(target, timeout=max(remaining, 0.001))
            scheduler = Scheduler(self.manager.probes, concurrency=1, explain=debug)
            scheduler.resources = self.resources
            policy = self.policy
            # Every name resolved and every address connected to, at every
            # redirect hop, is checked against the allow-list (anyprobe.net).
            with address_policy(policy.refusal if policy else None):
                result = await scheduler.check(target)
        self.metrics.probe_done(module.name, result)
        return result

    def _registry(self, results: Sequence[Result], *, check_labels: bool) -> CollectorRegistry:
        """The metrics of ``results``, built by the plugin that implements the
        ``anyprobe_metrics_registry`` hook; UsageError when none does."""
        registry: CollectorRegistry | None = self.manager.call_firstresult(
            "anyprobe_metrics_registry", results=results, check_labels=check_labels
        )
        if registry is None:
            raise UsageError(
                "anyprobe serve needs a plugin that implements anyprobe_metrics_registry "
                "(the built-in prometheus plugin does): none answered"
            )
        return registry

    def probe_exposition(self, result: Result) -> bytes:
        """A /probe answer's body: ``result``'s metrics, without per-check labels."""
        return self.exposition(self._registry([result], check_labels=False))

    def metrics_exposition(self) -> bytes:
        """/metrics' body: the server's own metrics, then the scheduled checks'."""
        registry = self.metrics.registry
        own = self.exposition(registry if self.workers is None else self.workers.merged(registry))
        if not self.latest:
            return own
        latest = list(self.latest.values())
        return own + self.exposition(self._registry(latest, check_labels=True))

    # -- scheduled checks -------------------------------------------------------

    async def run_checks(self) -> None:
        """Run the config's checks on their intervals until :meth:`stop_checks`;
        a reload restarts them with the new config."""
        async with anyio.create_task_group() as history:
            if self.history is not None:
                await history.start(self.history.run)
            await self._run_checks_until_stopped()
            if self.history is not None:
                self.history.stop()  # writes what it holds, then returns

    async def _run_checks_until_stopped(self) -> None:
        while not self._stopping:
            changed = self._checks_changed
            config = self.config
            async with anyio.create_task_group() as tg:
                stop = anyio.Event()
                tg.start_soon(self._run_config_checks, config, stop)
                tg.start_soon(self.push.run, config, stop)
                await changed.wait()
                stop.set()

    @contextmanager
    def request_scope(self) -> Iterator[anyio.CancelScope]:
        """A scope around one request's handling, cancelled by :meth:`abort_requests`."""
        with anyio.CancelScope() as scope:
            if self.aborting:
                scope.cancel()
            self._requests.add(scope)
            try:
                yield scope
            finally:
                self._requests.discard(scope)

    def abort_requests(self) -> None:
        """Cancel every request being handled (a second SIGTERM): each ends at
        once, so the server's graceful shutdown completes without waiting."""
        self.aborting = True
        for scope in list(self._requests):
            scope.cancel()

    def stop_checks(self) -> None:
        self._stopping = True
        self._checks_changed.set()

    async def record(self, target: Target, result: Result) -> None:
        """One scheduled (or pushed) result of the check ``target``: the one
        path every such result takes, to /metrics, the history and the alerts."""
        self.latest[target.name] = result
        self.metrics.scheduled.labels(result.status.value).inc()
        if self.history is not None:
            self.history.add(Record.from_result(target.name, result, time.time()))
        # One replica owns each check (--shard): its status changes and alerts
        # are that replica's alone, so each is sent once (a push another
        # replica received reaches the owner's alerts through the shared store,
        # anyprobe._serve_push).
        if self.owns(target.url):
            await self._on_result(target, result)
            await self.alerts.observe(target, result)

    async def _no_reporters(self, target: Target, result: Result) -> None:
        """The reporters' share of :meth:`record` between two config runs: none."""

    def owns(self, url: str) -> bool:
        """Whether this replica runs the check of ``url`` (every check without ``--shard``):
        the target URL of a scheduled check, ``push://NAME`` of a push check."""
        return self.shard is None or self.shard.owns(url)

    async def _run_config_checks(self, config: Config, stop: anyio.Event) -> None:
        targets = [target for target in config.targets if self.owns(target.url)]
        reporters: list[tuple[str, Reporter[Any]]] = list(config.reporters)
        counts: dict[Status, int] = {}
        started = time.perf_counter()
        ctx = ReportContext(total=len(targets))
        # Reporters an [[alert]] notifies get its notices, the others every status change.
        fanout = Fanout(self.alerts.session(reporters), ctx)
        interval = serve_tables(config).settings.interval
        # explain: a failed check's trace is kept (Record.trace) for its status page.
        scheduler = Scheduler(self.manager.probes, concurrency=1, explain=True)
        scheduler.resources = self.resources
        previous: dict[str, Status] = {}

        async def loop(target: Target, offset: float) -> None:
            every = config.intervals.get(target.name, interval)
            await anyio.sleep(min(offset, every))
            while True:
                due = anyio.current_time() + every
                # The host's slot first: waiting for it holds no probe slot.
                async with self.host_limits.hold(target.host), self.limiter:
                    self.metrics.in_flight.inc()
                    try:
                        result = await scheduler.check(target)
                    finally:
                        self.metrics.in_flight.dec()
                await self.record(target, result)
                await anyio.sleep_until(due)

        async def status_changes(target: Target, result: Result) -> None:
            if previous.get(target.name) is not result.status:
                previous[target.name] = result.status
                counts[result.status] = counts.get(result.status, 0) + 1
                await fanout.send(result)

        self._on_result = status_changes

        async with anyio.create_task_group() as outer:
            fanout.start(outer)
            await self.alerts.start(outer, ctx)
            async with anyio.create_task_group() as checks:
                # The first runs are spread, START_RATE a second, so that
                # thousands of checks do not all fall due at the same instant
                # at every interval (a small config still starts at once).
                for index, target in enumerate(targets):
                    checks.start_soon(loop, target, index / START_RATE)
                await stop.wait()
                checks.cancel_scope.cancel()
            summary = RunSummary(
                total=len(targets),
                counts=counts,
                not_finished=0,
                duration=time.perf_counter() - started,
            )
            self._on_result = self._no_reporters
            fanout.close(summary)
            alert_failures = self.alerts.stop(summary)
            await self.alerts.flush()
            # Reporters get a bounded time to flush what they hold.
            outer.cancel_scope.deadline = anyio.current_time() + DEFAULT_GRACE
        for failure in [*fanout.failures, *alert_failures]:
            log.warning("%s", failure)

    async def aclose(self) -> None:
        """Close the shared resources of the probes (the asyncio bridge, clients)
        and the history store."""
        from ._run import close_resources

        await close_resources(self.resources)
        if self.store is not None:
            await self.store.aclose()


# -- the config file ---------------------------------------------------------------


def load_serve_config(path: str | None, manager: PluginManager) -> Config:
    """The server's config: ``path``'s (checks optional), or just the built-ins."""
    if path is None:
        config = Config("<none>", [], [], RunDefaults.model_validate({}))
    else:
        config = load_config(path, manager, require_checks=False)
    if config.serve is None:
        config.serve = ServeTables(builtin_modules(manager))
    return config


def serve_tables(config: Config) -> ServeTables:
    """The config's ``[module.NAME]`` and ``[serve]`` tables, which
    :func:`load_serve_config` always fills."""
    if config.serve is None:
        raise ValueError(f"{config.path}: not loaded by load_serve_config (no serve tables)")
    return config.serve


def dependency_targets(config: Config) -> list[Target]:
    """What a server will check, for :func:`anyprobe._probe.load_dependencies`:
    the config's scheduled checks and a stand-in target per module, which
    carries the module's scheme and options (``http2 = true`` needs h2)."""
    targets = list(config.targets)
    for module in serve_tables(config).modules.values():
        host = "module.invalid"
        url = f"{module.scheme}://{host}/"
        targets.append(
            Target(
                name=module.name,
                url=url,
                display_url=url,
                probe=module.probe,
                host=host,
                port=None,
                options=module.options,
            )
        )
    return targets
