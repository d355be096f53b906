"""``anyprobe serve``: a prober for Prometheus, compatible with blackbox_exporter.

Prometheus scrapes ``/probe?target=...&module=...``; anyprobe runs the probe
named by the module on the target, under the scrape's own deadline, and
answers with the result's metrics (blackbox_exporter's names, built by the
``prometheus`` reporter plugin: one implementation). ``/metrics`` holds the
server's own metrics and the latest results of the config file's scheduled
``[[check]]`` entries; ``/-/healthy`` answers 200; ``POST /-/reload`` re-reads
the config file and keeps the running one when the new one is invalid.

The app is an ASGI app (Starlette) served by uvicorn (asyncio), anyprobe's
built-in server or hypercorn (asyncio or trio), on whichever event loop runs :func:`serve`
(:mod:`anyprobe._serve_asgi` picks and runs the server). This module binds, serves and
handles signals; the server's state (config, limits, metrics, the probes it
runs) is in :mod:`anyprobe._serve_server`, the config tables it reads in
:mod:`anyprobe._serve_config`, the allow-list, TLS and basic authentication of
the listener in :mod:`anyprobe._serve_security`, the ASGI app in
:mod:`anyprobe._serve_app`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Sequence
from functools import partial

import anyio

from ._backend import resolve_backend, running_on_trio
from ._backend import run as run_on
from ._cli_gc import settle
from ._config import Config
from ._errors import ConfigError, UsageError
from ._manager import PluginManager
from ._probe import import_dependencies
from ._serve_app import create_app
from ._serve_asgi import SERVERS, describe, resolve_server, runner
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
    parse_serve_tables,
)
from ._serve_security import (
    AllowList,
    ListenerSecurity,
    WebConfig,
    load_web_config,
)
from ._serve_server import (
    ABORT_WAIT,
    DEFAULT_GRACE,
    DEFAULT_TIMEOUT_OFFSET,
    FALLBACK_TIMEOUT,
    ProbeServer,
    dependency_targets,
    load_serve_config,
    probe_timeout,
)
from ._shard import Shard

__all__ = [
    "BUILTIN_MODULES",
    "DEFAULT_GRACE",
    "DEFAULT_INTERVAL",
    "FALLBACK_TIMEOUT",
    "MODULE_FIELDS",
    "SERVERS",
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

log = logging.getLogger("anyprobe.serve")

DEFAULT_LISTEN = "127.0.0.1:9115"


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


# -- serving ------------------------------------------------------------------------


def bind(listen: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket for ``HOST:PORT`` (port 0: any free port);
    ``reuse_port``: the first of an SO_REUSEPORT group (``--workers``)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server(
            (host, port), family=family, backlog=1024, reuse_port=reuse_port
        )
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None
    except ValueError as exc:  # no SO_REUSEPORT on this system (--workers)
        raise UsageError(f"--workers: {exc}") from None


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
    server_name: str = "auto",
) -> None:
    """Serve ``server`` on ``sockets`` until ``shutdown`` is set, on the running
    event loop (asyncio or trio); in-flight requests get ``grace`` seconds.
    ``web_config`` adds TLS and basic authentication to the listener;
    ``server_name`` picks the ASGI server (anyprobe._serve_asgi.resolve_server).

    The sockets are handed over to the server, which closes them.
    """
    security = ListenerSecurity(web_config)
    app = create_app(server, security if security.users or web_config else None)
    chosen = resolve_server(server_name, trio=running_on_trio())
    run_server = runner(chosen)
    settle()  # the app and the server's modules are built: see anyprobe._cli_gc
    log.info("serving with %s", describe(chosen))

    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run_checks)
        watching = anyio.CancelScope()

        async def watch_web_config() -> None:
            with watching:
                await security.watch()

        watching_disconnects = anyio.CancelScope()

        async def watch_disconnects() -> None:
            with watching_disconnects:
                await server.disconnects.run()

        tg.start_soon(watch_web_config)
        if server.workers is not None:
            tg.start_soon(server.workers.run, app)
        if chosen == "hypercorn":  # the others tell when a connection is lost
            tg.start_soon(watch_disconnects)
        try:
            await run_server(
                app,
                sockets,
                shutdown=shutdown,
                grace=grace,
                security=security,
                web_config=web_config,
                abort=server.abort_requests,
            )
        except Exception as exc:
            # Cancelled in its grace period, hypercorn's asyncio worker raises
            # InvalidStateError from its own clean-up; the shutdown was ours.
            if not server.aborting:
                raise
            log.debug("the server stopped while aborting: %r", exc)
        finally:
            server.stop_checks()
            if server.workers is not None:
                server.workers.stop()
            watching.cancel()
            watching_disconnects.cancel()
    await server.aclose()


async def serve_until_signalled(
    server: ProbeServer,
    sockets: Sequence[socket.socket],
    *,
    grace: float = DEFAULT_GRACE,
    web_config: WebConfig | None = None,
    server_name: str = "auto",
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
                    continue
                if server.workers is not None:
                    server.workers.stop(signum)  # each worker gets it too
                if not received:
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
            await serve(
                server,
                sockets,
                shutdown=shutdown,
                grace=grace,
                web_config=web_config,
                server_name=server_name,
            )
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


def _checked_options(
    grace: float, timeout_offset: float, allow_targets: Sequence[str]
) -> AllowList:
    """UsageError for a bad --grace, --timeout-offset or --allow-target, or a
    missing serve extra; else the --allow-target list."""
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
        return AllowList(allow_targets)
    except ValueError as exc:
        raise UsageError(f"--allow-target: {exc}") from None


def _replica(shard: Shard | None, config: Config) -> str:
    """What the announce line says of this replica's shard, if any."""
    if shard is None:
        return ""
    checks = [t.url for t in config.targets] + [c.target.url for c in config.push_checks]
    owned = sum(1 for key in checks if shard.owns(key))
    return f" as shard {shard} ({owned} of {len(checks)} checks)"


def main(
    manager: PluginManager,
    config_path: str | None,
    *,
    listen: str = DEFAULT_LISTEN,
    backend: str = "auto",
    concurrency: int | None = None,
    max_waiting: int | None = None,
    timeout_offset: float = DEFAULT_TIMEOUT_OFFSET,
    allow_targets: Sequence[str] = (),
    grace: float = DEFAULT_GRACE,
    web_config: str | None = None,
    shard: Shard | None = None,
    server_name: str = "auto",
    workers: int = 1,
    global_options: Sequence[str] = (),
    announce: Callable[[str], None] = print,
) -> int:
    """``anyprobe serve``: load, bind, serve until SIGTERM or SIGINT; exit status 0.

    ``announce`` receives one line per listening address once it accepts
    connections, and warnings about an exposed server. ``workers`` above 1
    starts that many processes less one beside this one, each answering
    /probe on the same socket (anyprobe._serve_workers), each started as
    ``python -m anyprobe [global_options] serve ...``.
    """
    from ._scheduler import resolve_concurrency

    # The loop and the server, now: a missing one is one line before binding.
    chosen = resolve_server(server_name, trio=resolve_backend(backend) == "trio")
    extra_allow = _checked_options(grace, timeout_offset, allow_targets)
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
        shard=shard,
    )
    # Imports before the first probe, as a run does: a missing extra is one
    # line now, and no probe's clock runs while a module is imported.
    import_dependencies(dependency_targets(config), manager.probes)
    sock = bind(listen, reuse_port=workers > 1)
    url = listening_url(sock, tls=web is not None and web.tls)
    if not is_loopback(parse_listen(listen)[0]) and not (server.allow or extra_allow):
        announce(
            f"warning: {url} is reachable from the network and /probe may connect anywhere "
            "(set [serve] allow_targets or --allow-target)"
        )
    replica = _replica(shard, config)
    if workers > 1:
        from ._serve_workers import Workers, worker_command

        command = worker_command(
            global_options=global_options,
            backend=backend,
            server_name=chosen,
            concurrency=concurrency,
            max_waiting=max_waiting,
            timeout_offset=timeout_offset,
            allow_targets=allow_targets,
            grace=grace,
            web_config=web_config,
        )
        server.workers = Workers(workers - 1, command, config_path, sock, grace=grace)
        replica += f" with {workers} processes"
    announce(f"serving on {url} (/probe, /metrics, /-/healthy, POST /-/reload){replica}")
    if server.history is not None:
        announce(f"keeping the checks' history in {server.history.store.description}")

    run = partial(serve_until_signalled, server, [sock], grace=grace, web_config=web)
    logging.getLogger("asyncio").addFilter(_drop_cancelled_connection_callback)
    signal_name = run_on(partial(run, server_name=chosen), backend)
    log.info("stopped after %s", signal_name)
    return 0
