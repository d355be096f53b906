"""``anyprobe serve``: a prober for Prometheus, compatible with blackbox_exporter.

Prometheus scrapes ``/probe?target=...&module=...``; anyprobe runs the probe
named by the module on the target, under the scrape's own deadline, and
answers with the result's metrics (blackbox_exporter's names, built by the
``prometheus`` reporter plugin: one implementation). ``/metrics`` holds the
server's own metrics and the latest results of the config file's scheduled
``[[check]]`` entries; ``/-/healthy`` answers 200; ``POST /-/reload`` re-reads
the config file and keeps the running one when the new one is invalid.

The app is an ASGI app (Starlette) served by hypercorn, on asyncio or trio,
whichever event loop runs :func:`serve`. The config tables it reads are in
:mod:`anyprobe._serve_config`; the allow-list, TLS and basic authentication of
the listener in :mod:`anyprobe._serve_security`; the ASGI app in
:mod:`anyprobe._serve_app`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from ._errors import ConfigError, OptionsError, TargetError, UsageError, did_you_mean
from ._fanout import Fanout
from ._inputs import escape_controls
from ._manager import PluginManager
from ._model import Result, RunSummary, Status, Target
from ._probe import import_dependencies, load_dependencies
from ._reporter import ReportContext, Reporter
from ._scheduler import HostLimits, Scheduler
from ._serve_config import (
    BUILTIN_MODULES,
    DEFAULT_INTERVAL,
    MODULE_FIELDS,
    Module,
    ModuleSettings,
    ServeSettings,
    ServeTables,
    build_module,
    builtin_modules,
    dependency_targets,
    load_serve_config,
    parse_serve_tables,
)
from ._serve_security import (
    AllowList,
    ListenerSecurity,
    WebConfig,
    hypercorn_config_class,
    load_web_config,
    valid_host_name,
)
from ._targets import TargetFactory, options_error
from .net import address_policy

__all__ = [
    "BUILTIN_MODULES",
    "DEFAULT_INTERVAL",
    "MODULE_FIELDS",
    "AllowList",
    "Module",
    "ModuleSettings",
    "ProbeServer",
    "ServeSettings",
    "ServeTables",
    "build_module",
    "builtin_modules",
    "load_serve_config",
    "main",
    "parse_serve_tables",
    "probe_timeout",
    "serve",
]

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._config import Config

log = logging.getLogger("anyprobe.serve")

_CONTROL = re.compile(r"[\x00-\x20\x7f]")

DEFAULT_LISTEN = "127.0.0.1:9115"
DEFAULT_MODULE = "http_2xx"
#: Seconds taken off Prometheus' scrape timeout, so the answer arrives in time.
DEFAULT_TIMEOUT_OFFSET = 0.5
#: A probe's timeout when neither the module nor the scrape sets one, and the
#: most a scrape's timeout header may ask for (blackbox_exporter's cap).
FALLBACK_TIMEOUT = 120.0
#: Seconds in-flight probes get to finish after SIGTERM before they are cancelled.
DEFAULT_GRACE = 10.0
#: Seconds after a second SIGTERM before serving is cancelled outright.
ABORT_WAIT = 5.0
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9115`` for IPv6) as a (host, port) pair."""
    host, colon, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, like {DEFAULT_LISTEN}")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--listen {text!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be from 0 to 65535")
    return host, port


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- the server's state ---------------------------------------------------------


class _Rejected(Exception):
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
    ) -> None:
        self.manager = manager
        self.config_path = config_path
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.concurrency = concurrency
        self.max_waiting = concurrency if max_waiting is None else max_waiting
        self.timeout_offset = timeout_offset
        self.extra_allow = AllowList(extra_allow)
        self.metrics = _Metrics()
        self.resources: dict[Any, Any] = {}
        self.latest: dict[str, Result] = {}
        self._waiting = 0
        self._checks_changed = anyio.Event()
        self._stopping = False
        self._requests: set[anyio.CancelScope] = set()
        self.aborting = False
        prometheus = manager.reporters.get("prometheus")
        build = getattr(prometheus, "registry", None)
        if build is None:
            raise UsageError("anyprobe serve needs the prometheus reporter plugin")
        self._build_registry: Callable[..., CollectorRegistry] = build
        self._install(config)

    # -- config --------------------------------------------------------------

    def _install(self, config: Config) -> None:
        tables: ServeTables = config.serve
        self.config = config
        # [defaults] per_host bounds the config's scheduled checks per host.
        self.host_limits = HostLimits(config.defaults.per_host)
        self.modules = tables.modules
        self.allow = tables.allow
        #: The allow-list in force: the config's and ``--allow-target``'s together.
        self.policy = self.allow + self.extra_allow
        self.factories = {name: TargetFactory(self.manager) for name in tables.modules}
        names = {target.name for target in config.targets}
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

    # -- /probe --------------------------------------------------------------

    def allowed(self, host: str) -> bool:
        return self.policy.refusal(host, []) is None

    def prepare(
        self,
        params: Mapping[str, str],
        scrape_timeout: str | None,
    ) -> tuple[Module, Target]:
        """The module and target of a /probe request; raises _Rejected."""
        text = params.get("target", "").strip()
        if not text:
            raise _Rejected(400, "Target parameter is missing", "bad_request")
        if _CONTROL.search(text):
            raise _Rejected(
                400, "Bad target: control characters or spaces in the target", "bad_request"
            )
        module_name = params.get("module") or DEFAULT_MODULE
        module = self.modules.get(module_name)
        if module is None:
            raise _Rejected(
                400,
                f"Unknown module {module_name!r}{did_you_mean(module_name, self.modules)} "
                f"(known: {', '.join(sorted(self.modules)) or 'none'})",
                "unknown_module",
            )
        try:
            timeout = probe_timeout(module.timeout, scrape_timeout, self.timeout_offset)
        except ValueError:
            raise _Rejected(
                400,
                f"{SCRAPE_TIMEOUT_HEADER}: {scrape_timeout!r} is not a positive number of seconds",
                "bad_request",
            ) from None
        url = text if "://" in text else f"{module.scheme}://{text}"
        try:
            target = self.factories[module.name].build(
                url, options=module.raw_options, timeout=timeout
            )
        except (TargetError, OptionsError) as exc:
            message = escape_controls(exc.message)
            raise _Rejected(400, f"Bad target: {message}", "bad_request") from None
        if target.probe != module.probe:
            raise _Rejected(
                400,
                f"Target {target.display_url} is for probe {target.probe}, "
                f"module {module.name} runs probe {module.probe}",
                "bad_request",
            )
        hostname = params.get("hostname")
        if hostname:
            if not valid_host_name(hostname):
                raise _Rejected(
                    400, f"Bad hostname: {hostname!r} is not a host name", "bad_request"
                )
            target = self._with_hostname(target, module, hostname)
        if not self.allowed(target.host):
            raise _Rejected(
                403, f"Target host {target.host!r} is not in allow_targets", "not_allowed"
            )
        return module, target

    def _with_hostname(self, target: Target, module: Module, hostname: str) -> Target:
        probe = self.manager.probes[module.probe]
        if "server_name" not in probe.Options.model_fields:
            raise _Rejected(
                400, f"hostname= applies to probes with TLS (not {module.probe})", "bad_request"
            )
        try:
            options = probe.Options.model_validate({**module.raw_options, "server_name": hostname})
        except ValidationError as exc:
            error = options_error(exc, probe.Options, what=f"probe {probe.name}")
            raise _Rejected(400, f"Bad hostname: {error.message}", "bad_request") from None
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
                raise _Rejected(
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
                raise _Rejected(503, "Busy: no probe slot freed in time", "busy") from None
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
        success = result.status in (Status.OK, Status.WARNING)
        self.metrics.probes.labels(module.name, "success" if success else "failure").inc()
        self.metrics.durations.labels(module.name).observe(result.duration)
        if not success and result.error is not None:
            self.metrics.errors.labels(module.name, result.error.type).inc()
        return result

    def probe_exposition(self, result: Result) -> bytes:
        from prometheus_client import generate_latest

        registry = self._build_registry([result], check_labels=False)
        data: bytes = generate_latest(registry)
        return data

    def metrics_exposition(self) -> bytes:
        from prometheus_client import generate_latest

        own: bytes = generate_latest(self.metrics.registry)
        if not self.latest:
            return own
        checks: bytes = generate_latest(self._build_registry(list(self.latest.values())))
        return own + checks

    # -- scheduled checks -------------------------------------------------------

    async def run_checks(self) -> None:
        """Run the config's checks on their intervals until :meth:`stop_checks`;
        a reload restarts them with the new config."""
        while not self._stopping:
            changed = self._checks_changed
            config = self.config
            async with anyio.create_task_group() as tg:
                stop = anyio.Event()
                tg.start_soon(self._run_config_checks, config, stop)
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

    async def _run_config_checks(self, config: Config, stop: anyio.Event) -> None:
        targets = list(config.targets)
        reporters: list[tuple[str, Reporter[Any]]] = list(config.reporters)
        counts: dict[Status, int] = {}
        started = time.perf_counter()
        ctx = ReportContext(total=len(targets))
        fanout = Fanout(reporters, ctx)
        interval = config.serve.settings.interval
        scheduler = Scheduler(self.manager.probes, concurrency=1)
        scheduler.resources = self.resources
        previous: dict[str, Status] = {}

        async def loop(target: Target) -> None:
            every = config.intervals.get(target.name, interval)
            while True:
                due = anyio.current_time() + every
                # The host's slot first: waiting for it holds no probe slot.
                async with self.host_limits.hold(target.host), self.limiter:
                    self.metrics.in_flight.inc()
                    try:
                        result = await scheduler.check(target)
                    finally:
                        self.metrics.in_flight.dec()
                self.latest[target.name] = result
                self.metrics.scheduled.labels(result.status.value).inc()
                if previous.get(target.name) is not result.status:
                    previous[target.name] = result.status
                    counts[result.status] = counts.get(result.status, 0) + 1
                    await fanout.send(result)
                await anyio.sleep_until(due)

        async with anyio.create_task_group() as outer:
            fanout.start(outer)
            async with anyio.create_task_group() as checks:
                for target in targets:
                    checks.start_soon(loop, target)
                await stop.wait()
                checks.cancel_scope.cancel()
            summary = RunSummary(
                total=len(targets),
                counts=counts,
                not_finished=0,
                duration=time.perf_counter() - started,
            )
            fanout.close(summary)
            # Reporters get a bounded time to flush what they hold.
            outer.cancel_scope.deadline = anyio.current_time() + DEFAULT_GRACE
        for failure in fanout.failures:
            log.warning("%s", failure)

    async def aclose(self) -> None:
        """Close the shared resources of the probes (the asyncio bridge, clients)."""
        from ._run import close_resources

        await close_resources(self.resources)


# -- serving ------------------------------------------------------------------------


def bind(listen: str) -> socket.socket:
    """A listening TCP socket for ``HOST:PORT`` (port 0: any free port)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None


def listening_url(sock: socket.socket, *, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(
    server: ProbeServer,
    sockets: Sequence[socket.socket],
    *,
    shutdown: anyio.Event,
    grace: float = DEFAULT_GRACE,
    web_config: WebConfig | None = None,
) -> None:
    """Serve ``server`` on ``sockets`` until ``shutdown`` is set, on the running
    event loop (asyncio or trio); in-flight requests get ``grace`` seconds.
    ``web_config`` adds TLS and basic authentication to the listener.

    The sockets are handed over to the server, which closes them.
    """
    security = ListenerSecurity(web_config)
    config = hypercorn_config_class(security)()
    if web_config is not None and web_config.tls:
        config.certfile = str(web_config.cert_file)
        config.keyfile = str(web_config.key_file)
    config.bind = [f"fd://{sock.detach()}" for sock in sockets]
    config.graceful_timeout = grace
    config.accesslog = None
    config.errorlog = logging.getLogger("anyprobe.serve.http")
    config.include_server_header = False
    config.keep_alive_timeout = 75.0  # longer than Prometheus keeps idle connections
    from ._serve_app import create_app

    app = create_app(server, security if security.users or web_config else None)
    if _running_on_trio():
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run_checks)
        watching = anyio.CancelScope()

        async def watch_web_config() -> None:
            with watching:
                await security.watch()

        tg.start_soon(watch_web_config)
        try:
            await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait, mode="asgi")
        except Exception as exc:
            # Cancelled in its grace period, hypercorn's asyncio worker raises
            # InvalidStateError from its own clean-up; the shutdown was ours.
            if not server.aborting:
                raise
            log.debug("hypercorn stopped while aborting: %r", exc)
        finally:
            server.stop_checks()
            watching.cancel()
    await server.aclose()


def _running_on_trio() -> bool:
    try:
        import sniffio
    except ImportError:  # trio needs sniffio: without it, this is asyncio
        return False
    return bool(sniffio.current_async_library() == "trio")


async def serve_until_signalled(
    server: ProbeServer,
    sockets: Sequence[socket.socket],
    *,
    grace: float = DEFAULT_GRACE,
    web_config: WebConfig | None = None,
) -> str:
    """:func:`serve` until SIGTERM or SIGINT (a second one cancels in-flight
    probes at once); SIGHUP reloads the config. Returns the signal's name."""
    import signal

    shutdown = anyio.Event()
    received: list[str] = []

    watching = anyio.CancelScope()
    serving = anyio.CancelScope()
    later = anyio.CancelScope()

    async def watch() -> None:
        with (
            watching,
            anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals,
        ):
            async for signum in signals:
                name = signal.Signals(signum).name
                if name == "SIGHUP":
                    try:
                        await server.reload()
                    except (ConfigError, UsageError) as exc:
                        log.warning("reload failed, keeping the running config: %s", exc)
                elif not received:
                    received.append(name)
                    log.info("%s: stopping; in-flight probes get %g s", name, grace)
                    shutdown.set()
                else:
                    log.info("%s again: cancelling in-flight probes", name)
                    server.abort_requests()
                    tg.start_soon(cancel_later)

    async def cancel_later() -> None:
        # The aborted requests end at once; a connection that still holds the
        # server (a stuck TLS handshake) is cancelled after a short wait.
        with later:
            await anyio.sleep(ABORT_WAIT)
            serving.cancel()

    # Each task is stopped through its own scope: hypercorn cancels and
    # uncancels the task that runs it on shutdown (asyncio), so the serving
    # task itself is never inside a scope cancelled from here but ``serving``.
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with serving:
            await serve(server, sockets, shutdown=shutdown, grace=grace, web_config=web_config)
        watching.cancel()
        later.cancel()
    return received[0] if received else "shutdown"


def _drop_cancelled_connection_callback(record: logging.LogRecord) -> bool:
    """Keep a shutdown's cancelled connections out of the log.

    When the grace period ends, hypercorn cancels the connections still open;
    on Python 3.11 asyncio's stream protocol then logs each cancelled
    connection task as "Exception in callback", with a CancelledError that
    says nothing useful.
    """
    error = record.exc_info[1] if record.exc_info else None
    return not (
        type(error).__name__ == "CancelledError"
        and "StreamReaderProtocol" in str(record.msg % record.args if record.args else record.msg)
    )


def main(
    manager: PluginManager,
    config_path: str | None,
    *,
    listen: str = DEFAULT_LISTEN,
    backend: str = "asyncio",
    concurrency: int | None = None,
    max_waiting: int | None = None,
    timeout_offset: float = DEFAULT_TIMEOUT_OFFSET,
    allow_targets: Sequence[str] = (),
    grace: float = DEFAULT_GRACE,
    web_config: str | None = None,
    announce: Callable[[str], None] = print,
) -> int:
    """``anyprobe serve``: load, bind, serve until SIGTERM or SIGINT; exit status 0.

    ``announce`` receives one line per listening address once it accepts
    connections, and warnings about an exposed server.
    """
    from ._cli import require_backend
    from ._scheduler import resolve_concurrency

    require_backend(backend)
    for option, value in (("--grace", grace), ("--timeout-offset", timeout_offset)):
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{option} {value}: expected a finite number of seconds, 0 or more")
    try:
        import hypercorn  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        raise UsageError(
            "anyprobe serve needs starlette and hypercorn (pip install 'anyprobe[serve]')"
        ) from None
    try:
        extra_allow = AllowList(allow_targets)
    except ValueError as exc:
        raise UsageError(f"--allow-target: {exc}") from None
    web = load_web_config(web_config) if web_config is not None else None
    config = load_serve_config(config_path, manager)
    limit = resolve_concurrency(concurrency or config.defaults.concurrency)
    server = ProbeServer(
        manager,
        config,
        config_path=config_path,
        concurrency=limit,
        max_waiting=max_waiting,
        timeout_offset=timeout_offset,
        extra_allow=allow_targets,
    )
    # Imports before the first probe, as a run does: a missing extra is one
    # line now, and no probe's clock runs while a module is imported.
    import_dependencies(dependency_targets(config), manager.probes)
    sock = bind(listen)
    url = listening_url(sock, tls=web is not None and web.tls)
    if not is_loopback(parse_listen(listen)[0]) and not (server.allow or extra_allow):
        announce(
            f"warning: {url} is reachable from the network and /probe may connect anywhere "
            "(set [serve] allow_targets or --allow-target)"
        )
    announce(f"serving on {url} (/probe, /metrics, /-/healthy, POST /-/reload)")

    async def run() -> str:
        return await serve_until_signalled(server, [sock], grace=grace, web_config=web)

    logging.getLogger("asyncio").addFilter(_drop_cancelled_connection_callback)

    signal_name = anyio.run(run, backend=backend)
    log.info("stopped after %s", signal_name)
    return 0
