"""The status page of ``anyprobe serve``: ``GET /`` and ``GET /check/NAME``.

Server-rendered HTML (Jinja2 templates in ``anyprobe/templates``, every value
escaped), no JavaScript: groups of checks with their status in words and by
an icon (never by colour alone), uptime over 24 h, 7 d and 30 d, a latency
sparkline (inline SVG, each point's phases in its tooltip), incidents and
active maintenance; dark when the reader's system is. ``GET /`` answers the
plain-text list of endpoints (``/-/help``) to a client that asks for
``text/plain`` rather than HTML.

The routes come in two lists, :func:`page_routes` (the page and the badges,
which ``[serve]`` may make public) and :func:`api_routes` (``/api/v1/...``),
over one :class:`~anyprobe._serve_view.StatusView` (:func:`web_routes`).
"""

from __future__ import annotations

import functools
import gzip
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._model import Status
from ._serve_view import DETAIL_POINTS, OVERVIEW_POINTS, StatusView
from ._store import Record

if TYPE_CHECKING:
    import jinja2
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from ._serve_server import ProbeServer

#: Paths the page part serves (``/`` exactly, and these prefixes): the rule
#: that makes the page public tells them from the API's (``/api/``) by these.
PAGE_PREFIXES = ("/check/", "/badge/")
API_PREFIX = "/api/"

#: Shown for a figure without data.
NONE = "\N{EN DASH}"

#: Bodies smaller than this are sent uncompressed.
_GZIP_MIN = 1024


def is_page_path(path: str) -> bool:
    """Whether ``path`` is the status page's or a badge's (not the API's)."""
    return path == "/" or path.startswith(PAGE_PREFIXES)


def web_routes(server: ProbeServer) -> list[BaseRoute]:
    """The status page, badges and JSON API of ``server``, over one view."""
    from ._serve_api import api_routes

    view = StatusView(server)
    return [*page_routes(view), *api_routes(view)]


def page_routes(view: StatusView) -> list[BaseRoute]:
    """``/``, ``/check/NAME`` and ``/badge/NAME/...``."""
    from starlette.background import BackgroundTask
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ._serve_app import help_text
    from ._serve_badges import badge_route

    async def index(request: Request) -> Response:
        if _prefers_text(request.headers.get("accept", "")):
            return PlainTextResponse(help_text(view.server))
        stale = view.stale()
        overview = await view.overview()
        refresh = _refresh_seconds(request.query_params.get("refresh"))
        body = render_overview(overview, refresh=refresh)
        background = BackgroundTask(view.refresh) if stale and overview.has_store else None
        return html_response(request, body, background=background)

    async def check(request: Request) -> Response:
        name = request.path_params["name"]
        detail = await view.detail(name)
        if detail is None:
            body = render("missing.html", name=name, now=_now())
            return html_response(request, body, status=404)
        return html_response(request, render("check.html", detail=detail, now=_now()))

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/check/{name:path}", check, methods=["GET", "HEAD"]),
        badge_route(view),
    ]


def _now() -> float:
    import time

    return time.time()


def _prefers_text(accept: str) -> bool:
    """Whether an Accept header asks for text/plain and not for HTML."""
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "text/plain" in kinds and not kinds & {"text/html", "application/xhtml+xml"}


def _refresh_seconds(value: str | None) -> int | None:
    """``?refresh=N``: reload the page every N seconds (at least 10), for wall screens."""
    if not value or not value.isdigit():
        return None
    return max(10, min(int(value), 86_400))


def html_response(
    request: Request, body: str, *, status: int = 200, background: Any = None
) -> Response:
    """An HTML answer, gzipped for a client that takes it."""
    from starlette.responses import Response

    data = body.encode()
    headers = {"cache-control": "no-cache", "vary": "Accept, Accept-Encoding"}
    if len(data) >= _GZIP_MIN and "gzip" in request.headers.get("accept-encoding", ""):
        data = gzip.compress(data, compresslevel=5)
        headers["content-encoding"] = "gzip"
    return Response(
        data,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=headers,
        background=background,
    )


# -- rendering --------------------------------------------------------------------


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: every value escaped, filters for times and figures."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("anyprobe", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        percent=percent,
        seconds=seconds,
        utc=utc,
        isotime=isotime,
        ago=ago,
        span=span,
        path=quote_path,
        phases=phases_text,
    )
    env.globals.update(sparkline=sparkline, status_label=status_label)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_overview(overview: Any, *, refresh: int | None = None) -> str:
    """The status page's HTML for an :class:`~anyprobe._serve_view.Overview`."""
    return render("index.html", overview=overview, now=overview.now, refresh=refresh)


_LABELS = {
    "ok": "Up",
    "warning": "Degraded",
    "critical": "Down",
    "unknown": "Unknown",
    "pending": "Pending",
}


def status_label(status: str) -> str:
    """The word a status is shown with, beside its icon."""
    return _LABELS.get(status, status)


def percent(value: float | None) -> str:
    """An uptime share as a percentage, never rounded up to 100 %."""
    if value is None:
        return NONE
    if value >= 1:
        return "100%"
    return f"{math.floor(value * 10_000) / 100:.2f}%"


def seconds(value: float | None) -> str:
    """A duration as people read it: ``41 ms``, ``1.25 s``."""
    if value is None:
        return NONE
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.0095 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def span(value: float | None) -> str:
    """A longer duration: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if value is None:
        return "ongoing"
    total = int(value)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min"
    if total < 86_400:
        hours, minutes = divmod(total // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(total // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def utc(at: float | None) -> str:
    if at is None:
        return NONE
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def isotime(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    return "just now" if now - at < 1 else f"{span(now - at)} ago"


def quote_path(name: str) -> str:
    """A check name as one path segment of a link (slashes kept: the routes take them)."""
    return quote(name, safe="/")


def phases_text(phases: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {seconds(value)}" for name, value in phases.items())


@dataclass(frozen=True, slots=True)
class Bar:
    """One point of a sparkline: its column, its dot and its tooltip."""

    x: float
    y: float
    width: float
    status: str
    title: str


@dataclass(frozen=True, slots=True)
class Sparkline:
    width: int
    height: int
    points: str
    bars: Sequence[Bar]
    label: str


def sparkline(records: Sequence[Record], *, large: bool = False) -> Sparkline:
    """An inline SVG's coordinates for ``records``' durations, oldest left."""
    count = DETAIL_POINTS if large else OVERVIEW_POINTS
    width, height = (600, 60) if large else (120, 24)
    records = records[-count:]
    top = max((r.duration for r in records), default=0.0) or 1.0
    step = width / max(len(records), 1)
    bars = []
    coordinates = []
    for index, record in enumerate(records):
        x = index * step
        y = height - 2 - (record.duration / top) * (height - 4)
        coordinates.append(f"{x + step / 2:.1f},{y:.1f}")
        verdict = status_label(record.status.value)
        tooltip = f"{utc(record.at)}: {verdict}, {seconds(record.duration)}"
        if record.phases:
            tooltip += f" ({phases_text(record.phases)})"
        bars.append(Bar(round(x, 1), round(y, 1), round(step, 1), record.status.value, tooltip))
    durations = [r.duration for r in records]
    label = (
        f"Latency of the last {len(records)} results, from {seconds(min(durations))} "
        f"to {seconds(max(durations))}"
        if durations
        else "No results yet"
    )
    return Sparkline(width, height, " ".join(coordinates), bars, label)


def failing(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.status is not Status.OK]
