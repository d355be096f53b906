"""``anyprobe serve``: a prober for Prometheus, compatible with blackbox_exporter.

Prometheus scrapes ``/probe?target=...&module=...``; anyprobe runs the probe
named by the module on the target, under the scrape's own deadline, and
answers with the result's metrics (blackbox_exporter's names, built by the
``prometheus`` reporter plugin: one implementation). ``/metrics`` holds the
server's own metrics and the latest results of the config file's scheduled
``[[check]]`` entries; ``/-/healthy`` answers 200; ``POST /-/reload`` re-reads
the config file and keeps the running one when the new one is invalid.

The app is an ASGI app (Starlette) served by hypercorn, on asyncio or trio,
whichever event loop runs :func:`serve`. Config tables this module owns::

    [module.http_2xx]       # a named option set for /probe?module=http_2xx
    probe = "http"
    timeout = 5
    expect_status = [200]

    [serve]
    allow_targets = ["*.example.com", "10.0.0.0/8"]
    interval = 60           # seconds between runs of a [[check]] without its own
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import json
import logging
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, OptionsError, TargetError, UsageError, did_you_mean
from .fanout import Fanout
from .manager import PluginManager
from .model import Result, RunSummary, Status, Target
from .reporter import ReportContext, Reporter
from .scheduler import HostLimits, Scheduler
from .targets import TargetFactory, options_error

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from .config import Config

log = logging.getLogger("anyprobe.serve")

DEFAULT_LISTEN = "127.0.0.1:9115"
DEFAULT_MODULE = "http_2xx"
#: Seconds taken off Prometheus' scrape timeout, so the answer arrives in time.
DEFAULT_TIMEOUT_OFFSET = 0.5
#: A probe's timeout when neither the module nor the scrape sets one.
FALLBACK_TIMEOUT = 120.0
DEFAULT_INTERVAL = 60.0
#: Seconds in-flight probes get to finish after SIGTERM before they are cancelled.
DEFAULT_GRACE = 10.0
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Modules every server has; a ``[module.NAME]`` table of the same name replaces one.
BUILTIN_MODULES: dict[str, dict[str, Any]] = {
    "http_2xx": {"probe": "http"},
    "http_post_2xx": {"probe": "http", "method": "POST"},
    "tcp_connect": {"probe": "tcp"},
    "tls_connect": {"probe": "tcp", "scheme": "tls"},
}


# -- config: [module.NAME] and [serve] -----------------------------------------


class ModuleSettings(BaseModel):
    """The fields of a ``[module.NAME]`` table that are not the probe's options."""

    model_config = ConfigDict(extra="forbid")

    probe: str = Field(description="The probe that runs: http, tcp, dns, ssh...")
    timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a probe may take; the scrape's timeout wins when smaller.",
    )
    scheme: str | None = Field(
        None,
        description="Scheme given to a target written without one (host:port); "
        "default the probe's first scheme.",
    )


MODULE_FIELDS = tuple(ModuleSettings.model_fields)


class ServeSettings(BaseModel):
    """The ``[serve]`` table."""

    model_config = ConfigDict(extra="forbid")

    allow_targets: list[str] = Field(
        default_factory=list,
        description="Hosts /probe may connect to: name patterns (*.example.com) and "
        "networks (10.0.0.0/8, 2001:db8::/32). Empty: any host.",
    )
    interval: float = Field(
        DEFAULT_INTERVAL, gt=0, description="Seconds between runs of a [[check]] without one."
    )


@dataclass(frozen=True)
class Module:
    """A validated module: the probe, its options, and the module's own settings."""

    name: str
    probe: str
    scheme: str
    timeout: float | None
    options: Any
    raw_options: Mapping[str, Any]

    def describe(self) -> str:
        """The module as TOML-like lines for the debug view (secrets stay hidden)."""
        lines = [f"[module.{self.name}]", f'probe = "{self.probe}"', f'scheme = "{self.scheme}"']
        if self.timeout is not None:
            lines.append(f"timeout = {self.timeout:g}")
        dumped = self.options.model_dump(exclude_defaults=True)
        for key in sorted(dumped):
            lines.append(f"{key} = {json.dumps(dumped[key], default=str)}")
        return "\n".join(lines)


class AllowList:
    """Which hosts ``/probe`` may connect to.

    Name patterns use shell wildcards (``*.example.com``) and match the
    target's host name; networks (``10.0.0.0/8``) match a target written as
    an IP address. A name is not resolved to match a network: a pattern
    allows whatever address that name resolves to.
    """

    _PATTERN = re.compile(r"^[a-z0-9*?\[\]._-]+$")

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self.entries = tuple(entries)
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.patterns: list[str] = []
        for entry in entries:
            text = entry.strip().lower()
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if not text or not self._PATTERN.match(text):
                raise ValueError(
                    f"{entry!r} is neither a host pattern (*.example.com) nor a network "
                    "(10.0.0.0/8)"
                )
            self.patterns.append(text)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (a name or an address, as in the target URL) is allowed."""
        if not self.entries:
            return True
        host = host.strip("[]").lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.networks):
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns)


@dataclass
class ServeTables:
    """The validated ``[module.NAME]`` and ``[serve]`` tables of a config file."""

    modules: dict[str, Module]
    settings: ServeSettings = field(default_factory=lambda: ServeSettings.model_validate({}))
    allow: AllowList = field(default_factory=AllowList)


def build_module(manager: PluginManager, name: str, raw: Mapping[str, Any]) -> Module:
    """Validate one module's table; raises OptionsError naming the field."""
    own = {k: v for k, v in raw.items() if k in MODULE_FIELDS}
    options = {k: v for k, v in raw.items() if k not in MODULE_FIELDS}
    try:
        settings = ModuleSettings.model_validate(own)
    except ValidationError as exc:
        raise options_error(exc, ModuleSettings, what=f"module {name}") from None
    probe = manager.probes.get(settings.probe)
    if probe is None:
        known = ", ".join(sorted(manager.probes)) or "none"
        hint = did_you_mean(settings.probe, manager.probes)
        raise OptionsError(
            f"unknown probe {settings.probe!r}{hint} (known: {known})", field="probe"
        )
    scheme = (settings.scheme or probe.schemes[0]).lower()
    if manager.probe_for_scheme(scheme) is not probe:
        raise OptionsError(
            f"scheme {scheme!r} is not one of probe {probe.name}'s ({', '.join(probe.schemes)})",
            field="scheme",
        )
    known_fields = probe.Options.model_fields
    for key in options:
        if key not in known_fields:
            hint = did_you_mean(key, [*known_fields, *MODULE_FIELDS])
            raise OptionsError(f"unknown option for probe {probe.name}{hint}", field=key)
    try:
        validated = probe.Options.model_validate(options)
    except ValidationError as exc:
        raise options_error(exc, probe.Options, what=f"probe {probe.name}") from None
    return Module(name, probe.name, scheme, settings.timeout, validated, dict(options))


def builtin_modules(manager: PluginManager) -> dict[str, Module]:
    """The built-in modules whose probe is installed."""
    modules = {}
    for name, raw in BUILTIN_MODULES.items():
        if raw["probe"] in manager.probes:
            modules[name] = build_module(manager, name, raw)
    return modules


def parse_serve_tables(
    document: Mapping[str, Any], manager: PluginManager, fail: Callable[..., ConfigError]
) -> ServeTables:
    """Validate the ``[module.NAME]`` and ``[serve]`` tables of a config document.

    ``fail(message, table=..., key=...)`` makes the ConfigError that names the
    file and line (config.py's helper).
    """
    modules = builtin_modules(manager)
    raw_modules = document.get("module", {})
    if not isinstance(raw_modules, dict):
        raise fail("[module] must hold tables: [module.NAME]", table="module")
    for name, raw in raw_modules.items():
        table = f"module.{name}"
        if not isinstance(raw, dict):
            raise fail(f"[module.{name}] must be a table", table=table)
        try:
            modules[name] = build_module(manager, name, raw)
        except OptionsError as exc:
            key = exc.field.split(".")[0] if exc.field else None
            raise fail(f"module {name}: {exc.message}", table=table, key=key) from None
    raw_settings = document.get("serve", {})
    if not isinstance(raw_settings, dict):
        raise fail("[serve] must be a table", table="serve")
    try:
        settings = ServeSettings.model_validate(raw_settings)
    except ValidationError as exc:
        error = options_error(exc, ServeSettings, what="[serve]")
        raise fail(error.message, table="serve", key=error.field) from None
    try:
        allow = AllowList(settings.allow_targets)
    except ValueError as exc:
        raise fail(str(exc), table="serve", key="allow_targets") from None
    return ServeTables(modules, settings, allow)


def load_serve_config(path: str | None, manager: PluginManager) -> Config:
    """The server's config: ``path``'s (checks optional), or just the built-ins."""
    from .config import Config, RunDefaults, load_config

    if path is None:
        config = Config("<none>", [], [], RunDefaults.model_validate({}))
    else:
        config = load_config(path, manager, require_checks=False)
    if config.serve is None:
        config.serve = ServeTables(builtin_modules(manager))
    return config


def probe_timeout(module_timeout: float | None, scrape_header: str | None, offset: float) -> float:
    """The probe's timeout: the smaller of the module's and the scrape's
    (the header minus ``offset``), :data:`FALLBACK_TIMEOUT` when neither is set.

    Raises ValueError for a header that is not a positive number of seconds.
    """
    budget: float | None = None
    if scrape_header is not None:
        scrape = float(scrape_header)
        if not math.isfinite(scrape) or scrape <= 0:
            raise ValueError(scrape_header)
        # A scrape timeout shorter than the offset is used whole rather than refused.
        budget = scrape - offset if scrape > offset else scrape
    candidates = [t for t in (module_timeout, budget) if t]
    return min(candidates) if candidates else FALLBACK_TIMEOUT


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
            "/probe requests answered without a probe, by reason "
            "(bad_request, unknown_module, not_allowed, busy).",
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
        except Exception:
            self.metrics.reload_ok.set(0)
            raise
        self._install(config)
        log.info("config reloaded from %s", path or "<built-in modules>")
        changed, self._checks_changed = self._checks_changed, anyio.Event()
        changed.set()

    # -- /probe --------------------------------------------------------------

    def allowed(self, host: str) -> bool:
        lists = [a for a in (self.allow, self.extra_allow) if a]
        return not lists or any(a.allows(host) for a in lists)

    def prepare(
        self,
        params: Mapping[str, str],
        scrape_timeout: str | None,
    ) -> tuple[Module, Target]:
        """The module and target of a /probe request; raises _Rejected."""
        text = params.get("target", "").strip()
        if not text:
            raise _Rejected(400, "Target parameter is missing", "bad_request")
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
            raise _Rejected(400, f"Bad target: {exc.message}", "bad_request") from None
        if target.probe != module.probe:
            raise _Rejected(
                400,
                f"Target {target.display_url} is for probe {target.probe}, "
                f"module {module.name} runs probe {module.probe}",
                "bad_request",
            )
        hostname = params.get("hostname")
        if hostname:
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
        from .run import close_resources

        await close_resources(self.resources)


# -- the ASGI app -----------------------------------------------------------------


def create_app(server: ProbeServer) -> Callable[..., Awaitable[None]]:
    """The ASGI app serving ``server``: /probe, /metrics, /-/healthy, /-/reload.

    ``GET /probe``, the one endpoint under load, is answered by a plain ASGI
    handler in front of the Starlette app, which serves the others.
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    def text(body: str, status: int = 200) -> Response:
        return PlainTextResponse(body if body.endswith("\n") else body + "\n", status_code=status)

    async def metrics(request: Request) -> Response:
        return Response(server.metrics_exposition(), media_type=EXPOSITION_TYPE)

    async def healthy(request: Request) -> Response:
        return text("Healthy")

    async def reload(request: Request) -> Response:
        try:
            await server.reload()
        except (ConfigError, UsageError) as exc:
            return text(f"failed to reload config, keeping the running one: {exc}", 500)
        return text("OK: config reloaded")

    async def index(request: Request) -> Response:
        modules = ", ".join(sorted(server.modules))
        return text(
            "anyprobe serve\n\n"
            "/probe?target=URL&module=NAME  probe a target (modules: " + modules + ")\n"
            "/probe?...&debug=true          the probe's trace, metrics and module\n"
            "/metrics                       the server's own metrics and scheduled checks\n"
            "/-/healthy                     200 while serving\n"
            "POST /-/reload                 re-read the config file\n"
        )

    routes = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/reload", reload, methods=["POST", "PUT"]),
        Route("/", index, methods=["GET"]),
    ]
    others = Starlette(routes=routes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/probe":
            status, content_type, body, headers = await answer_probe(server, scope)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                        *headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        else:
            await others(scope, receive, send)

    return app


_PLAIN_TEXT = b"text/plain; charset=utf-8"
_SCRAPE_TIMEOUT_KEY = SCRAPE_TIMEOUT_HEADER.lower().encode()


async def answer_probe(
    server: ProbeServer, scope: Mapping[str, Any]
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """A ``/probe`` request's status, content type, body and extra headers."""
    if scope["method"] != "GET":
        return 405, _PLAIN_TEXT, b"Method Not Allowed\n", [(b"allow", b"GET")]
    params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    scrape_timeout = None
    for name, value in scope["headers"]:
        if name == _SCRAPE_TIMEOUT_KEY:
            scrape_timeout = value.decode("latin-1")
    debug = params.get("debug", "").lower() == "true"
    try:
        module, target = server.prepare(params, scrape_timeout)
        result = await server.probe(module, target, debug=debug)
    except _Rejected as rejected:
        server.metrics.rejected.labels(rejected.reason).inc()
        headers = [(b"retry-after", b"1")] if rejected.status == 503 else []
        return rejected.status, _PLAIN_TEXT, rejected.message.encode() + b"\n", headers
    exposition = server.probe_exposition(result)
    if debug:
        body = debug_text(result, exposition.decode(), module) + "\n"
        return 200, _PLAIN_TEXT, body.encode(), []
    return 200, EXPOSITION_TYPE.encode(), exposition, []


def debug_text(result: Result, exposition: str, module: Module) -> str:
    """The ``debug=true`` answer: the trace, the verdict, the metrics, the module."""
    lines = ["Logs for the probe:"]
    for event in result.trace:
        lines.append(f"{event.at * 1000:9.3f} ms  {event.message}")
    lines.append(
        f"probe {result.probe} on {result.target}: {result.status.value}: {result.summary}"
    )
    if result.error is not None:
        lines.append(
            f"error: {result.error.type} during {result.error.phase}: {result.error.message}"
        )
    for phase, seconds in result.phases.items():
        lines.append(f"phase {phase}: {seconds:.6f} s")
    lines += ["", "Metrics that would have been returned:", exposition.rstrip("\n"), ""]
    lines += ["Module configuration:", module.describe()]
    return "\n".join(lines)


# -- serving ------------------------------------------------------------------------


def bind(listen: str) -> socket.socket:
    """A listening TCP socket for ``HOST:PORT`` (port 0: any free port)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None


def listening_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(
    server: ProbeServer,
    sockets: Sequence[socket.socket],
    *,
    shutdown: anyio.Event,
    grace: float = DEFAULT_GRACE,
) -> None:
    """Serve ``server`` on ``sockets`` until ``shutdown`` is set, on the running
    event loop (asyncio or trio); in-flight requests get ``grace`` seconds.

    The sockets are handed over to the server, which closes them.
    """
    from hypercorn.config import Config as HypercornConfig

    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}" for sock in sockets]
    config.graceful_timeout = grace
    config.accesslog = None
    config.errorlog = logging.getLogger("anyprobe.serve.http")
    config.include_server_header = False
    config.keep_alive_timeout = 75.0  # longer than Prometheus keeps idle connections
    app = create_app(server)
    if _running_on_trio():
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run_checks)
        try:
            await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait, mode="asgi")
        finally:
            server.stop_checks()
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
) -> str:
    """:func:`serve` until SIGTERM or SIGINT (a second one cancels in-flight
    probes at once); SIGHUP reloads the config. Returns the signal's name."""
    import signal

    shutdown = anyio.Event()
    received: list[str] = []

    watching = anyio.CancelScope()
    serving = anyio.CancelScope()

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
                    serving.cancel()

    # Each task is stopped through its own scope: hypercorn cancels and
    # uncancels the task that runs it on shutdown (asyncio), so the serving
    # task itself is never inside a scope cancelled from here but ``serving``.
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with serving:
            await serve(server, sockets, shutdown=shutdown, grace=grace)
        watching.cancel()
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
    announce: Callable[[str], None] = print,
) -> int:
    """``anyprobe serve``: load, bind, serve until SIGTERM or SIGINT; exit status 0.

    ``announce`` receives one line per listening address once it accepts
    connections, and warnings about an exposed server.
    """
    from .cli import require_backend
    from .scheduler import resolve_concurrency

    require_backend(backend)
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
    sock = bind(listen)
    url = listening_url(sock)
    if not is_loopback(parse_listen(listen)[0]) and not (server.allow or extra_allow):
        announce(
            f"warning: {url} is reachable from the network and /probe may connect anywhere "
            "(set [serve] allow_targets or --allow-target)"
        )
    announce(f"serving on {url} (/probe, /metrics, /-/healthy, POST /-/reload)")

    async def run() -> str:
        return await serve_until_signalled(server, [sock], grace=grace)

    logging.getLogger("asyncio").addFilter(_drop_cancelled_connection_callback)

    signal_name = anyio.run(run, backend=backend)
    log.info("stopped after %s", signal_name)
    return 0
