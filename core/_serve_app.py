"""The ASGI app of ``anyprobe serve``: requests in, probes and metrics out.

``GET /probe`` is answered by a plain ASGI handler (the one endpoint under
load), the others by a small Starlette app; with basic-auth users configured,
every endpoint wants their credentials first, but ``/push/TOKEN`` and the parts
the web config makes public (:meth:`ListenerSecurity.requires_credentials`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio

from ._errors import ConfigError, UsageError
from ._model import Result
from ._serve_config import Module
from ._serve_disconnect import CONNECTION_LOST, ConnectionLost
from ._serve_security import ListenerSecurity
from ._serve_server import EXPOSITION_TYPE, SCRAPE_TIMEOUT_HEADER, ProbeServer, Rejected

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send


def create_app(
    server: ProbeServer, security: ListenerSecurity | None = None
) -> Callable[..., Awaitable[None]]:
    """The ASGI app serving ``server``: /probe, /metrics, /-/healthy, /-/reload.

    ``GET /probe``, the one endpoint under load, is answered by a plain ASGI
    handler in front of the Starlette app, which serves the others. With
    ``security`` holding users, every endpoint needs their Basic credentials.
    A probe ends when its client disconnects, and frees its slot.
    """
    others = _starlette_app(server)
    server.access = security
    forward = server.forward  # in a worker of --workers: the parent serves the rest

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            security is not None
            and scope["type"] == "http"
            and security.requires_credentials(scope["method"], scope["path"])
            and not await security.authorized(scope["headers"])
        ):
            server.metrics.rejected.labels("unauthorized").inc()
            await _refuse(send)
        elif scope["type"] == "http" and scope["path"] == "/probe":
            await _serve_probe(server, scope, receive, send)
        elif forward is not None and scope["type"] == "http" and scope["path"] != "/-/healthy":
            await forward(scope, receive, send)
        elif scope["type"] == "lifespan":
            await others(scope, receive, send)
        else:
            with server.request_scope():
                await others(scope, receive, send)

    return app


def _starlette_app(server: ProbeServer) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The endpoints other than /probe: /metrics, /-/healthy, /-/reload, /-/help and
    the monitor's (the status page, its API and badges)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    def text(body: str, status: int = 200) -> Response:
        return PlainTextResponse(body if body.endswith("\n") else body + "\n", status_code=status)

    async def metrics(request: Request) -> Response:
        if server.workers is not None:
            await server.workers.refresh()
        try:
            body = server.metrics_exposition()
        except UsageError as exc:  # the metrics plugin broke since the server started
            return text(str(exc), 500)
        return Response(body, media_type=EXPOSITION_TYPE)

    async def healthy(request: Request) -> Response:
        return text("Healthy")

    async def reload(request: Request) -> Response:
        try:
            await server.reload()
        except (ConfigError, UsageError) as exc:
            return text(f"failed to reload config, keeping the running one: {exc}", 500)
        return text("OK: config reloaded")

    async def index(request: Request) -> Response:
        from ._serve_view import help_text

        return text(help_text(server))

    routes = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/reload", reload, methods=["POST", "PUT"]),
        Route("/-/help", index, methods=["GET"]),
        *monitor_routes(server),
    ]
    return Starlette(routes=routes)


def monitor_routes(server: ProbeServer) -> list[Any]:
    """The monitor's routes (status page, JSON API, badges, push), each from
    its own module: anyprobe._serve_api, anyprobe._serve_page, anyprobe._serve_push."""
    from ._maintenance import maintenance_routes
    from ._serve_api import api_routes
    from ._serve_page import page_routes
    from ._serve_push import push_routes
    from ._serve_view import StatusView

    view = StatusView(server)  # one view (and its history cache) for the page and API
    return [
        *push_routes(server),
        *maintenance_routes(server),
        *page_routes(view),
        *api_routes(view),
    ]


async def _refuse(send: Send) -> None:
    """401, asking for Basic credentials."""
    body = b"Unauthorized\n"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", _PLAIN_TEXT),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Basic realm="anyprobe", charset="UTF-8"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _serve_probe(server: ProbeServer, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``/probe`` request (nothing when its client went away)."""
    answer: _Answer | None = None
    with server.request_scope() as handling:
        answer = await answer_unless_disconnected(server, scope, receive)
    if handling.cancelled_caught:
        answer = 503, _PLAIN_TEXT, b"Shutting down: probe cancelled\n", []
    elif answer is None:
        return  # the client went away: nobody to answer
    status, content_type, body, headers = answer
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


_PLAIN_TEXT = b"text/plain; charset=utf-8"
_Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


async def answer_unless_disconnected(
    server: ProbeServer, scope: Mapping[str, Any], receive: Receive
) -> _Answer | None:
    """:func:`answer_probe`, cancelled when the client disconnects (None then),
    as blackbox_exporter derives a probe's context from its request's.

    A server that tells when a connection is lost (uvicorn and the built-in one, through
    :class:`~anyprobe._serve_disconnect.ConnectionLost`) cancels the probe itself;
    otherwise (hypercorn) a task waits for the ``http.disconnect`` message: the
    server's :class:`~anyprobe._serve_disconnect.DisconnectWatcher` starts one
    for a probe that runs long, or, when it does not run, the request its own."""
    lost: ConnectionLost | None = (scope.get("extensions") or _NONE).get(CONNECTION_LOST)
    if lost is not None:
        with lost.cancelling():
            return await answer_probe(server, scope)
        server.metrics.rejected.labels("disconnected").inc()
        return None
    answer: _Answer | None = None
    if server.disconnects.running:
        with server.disconnects.watching(receive) as probe:
            answer = await answer_probe(server, scope)
        if probe.disconnected:
            server.metrics.rejected.labels("disconnected").inc()
            return None
        return answer
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    server.metrics.rejected.labels("disconnected").inc()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        answer = await answer_probe(server, scope)
        tg.cancel_scope.cancel()
    return answer


_NONE: Mapping[str, Any] = {}
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
    except Rejected as rejected:
        server.metrics.rejected.labels(rejected.reason).inc()
        headers = [(b"retry-after", b"1")] if rejected.status == 503 else []
        return rejected.status, _PLAIN_TEXT, rejected.message.encode() + b"\n", headers
    try:
        exposition = server.probe_exposition(result)
    except UsageError as exc:  # the metrics plugin broke since the server started
        return 500, _PLAIN_TEXT, str(exc).encode() + b"\n", []
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
