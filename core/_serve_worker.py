"""The body of one worker process of ``anyprobe serve --workers N``.

Apart from :mod:`anyprobe._serve_workers` (the parent's side and the
protocol both sides speak) because it runs :mod:`anyprobe._serve`'s server,
which starts the workers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc

from ._manager import PluginManager
from ._serve_workers import ForwardToParent, WorkerSpec, answer_parent

log = logging.getLogger("anyprobe.serve")


def worker_main(
    manager: PluginManager,
    config_path: str | None,
    spec_text: str,
    *,
    backend: str = "auto",
    concurrency: int | None = None,
    max_waiting: int | None = None,
    timeout_offset: float = 0.5,
    allow_targets: Sequence[str] = (),
    grace: float = 10.0,
    web_config: str | None = None,
    server_name: str = "auto",
    **ignored: Any,
) -> int:
    """A worker of ``anyprobe serve --workers N``: serve ``/probe`` on the
    inherited socket until SIGTERM, SIGINT or the parent's end."""
    from functools import partial

    from ._backend import resolve_backend
    from ._backend import run as run_on
    from ._probe import import_dependencies
    from ._scheduler import resolve_concurrency
    from ._serve import _drop_cancelled_connection_callback, serve_until_signalled
    from ._serve_asgi import resolve_server
    from ._serve_security import load_web_config
    from ._serve_server import ProbeServer, dependency_targets, load_serve_config

    spec = WorkerSpec.parse(spec_text)
    chosen = resolve_server(server_name, trio=resolve_backend(backend) == "trio")
    web = load_web_config(web_config) if web_config is not None else None
    config = load_serve_config(config_path, manager)

    class WorkerServer(ProbeServer):
        async def run_checks(self) -> None:
            """The parent runs the config's checks: a worker runs only /probe."""

    server = WorkerServer(
        manager,
        config,
        config_path=config_path,
        concurrency=resolve_concurrency(concurrency or config.defaults.concurrency),
        max_waiting=max_waiting,
        timeout_offset=timeout_offset,
        extra_allow=allow_targets,
    )
    server.history = None  # the parent's alone
    server.store = None
    server.forward = ForwardToParent(spec.parent_socket)
    import_dependencies(dependency_targets(config), manager.probes)
    listening = socket.socket(fileno=spec.listen_fd)
    control = socket.socket(fileno=spec.control_fd)

    async def main() -> str:
        stream = await anyio.abc.UNIXSocketStream.from_socket(control)
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(answer_parent, stream, server)
            name = await serve_until_signalled(
                server, [listening], grace=grace, web_config=web, server_name=chosen
            )
            tg.cancel_scope.cancel()
        return name

    logging.getLogger("asyncio").addFilter(_drop_cancelled_connection_callback)
    name = run_on(partial(main), backend)
    log.debug("worker %d stopped after %s", spec.index, name)
    return 0
