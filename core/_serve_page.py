"""The status page of ``anyprobe serve``: ``GET /`` and ``GET /check/NAME``.

Server-rendered HTML (Jinja2 templates in ``anyprobe/templates``, every value
escaped), no JavaScript: groups of checks with their status in words and by
an icon (never by colour alone), uptime over 24 h, 7 d and 30 d, a latency
sparkline (inline SVG, each point's phases in its tooltip), incidents and
active maintenance; dark when the reader's system is. ``GET /`` answers the
plain-text list of endpoints (``/-/help``) to a client that asks for
``text/plain`` rather than HTML.

The routes come in two lists, :func:`page_routes` here (the page and the
badges, which the web config's ``[access] public`` may open) and
:func:`anyprobe._serve_api.api_routes` (``/api/v1/...``), over one
:class:`~anyprobe._serve_view.StatusView` (anyprobe._serve_app.monitor_routes).
"""

from __future__ import annotations

import functools
import gzip
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._serve_view import (
    DETAIL_POINTS,
    NONE,
    OVERVIEW_POINTS,
    CheckView,
    History,
    StatusView,
    help_text,
    percent,
    seconds,
)
from ._store import Record

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute


#: Paths the page part serves (``/`` exactly, and these prefixes): the rule
#: that makes the page public tells them from the API's (``/api/``) by these.
PAGE_PREFIXES = ("/check/", "/badge/")
API_PREFIX = "/api/"

#: Shown for a figure without data.

#: Bodies smaller than this are sent uncompressed.
_GZIP_MIN = 1024


def is_page_path(path: str) -> bool:
    """Whether ``path`` is the status page's or a badge's (not the API's)."""
    return path == "/" or path.startswith(PAGE_PREFIXES)


def page_routes(view: StatusView) -> list[BaseRoute]:
    """``/``, ``/check/NAME`` and ``/badge/NAME/...``."""
    from starlette.background import BackgroundTask
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ._serve_badges import badge_route

    rows = RowCache()  # the rows drawn for earlier answers

    async def index(request: Request) -> Response:
        if _prefers_text(request.headers.get("accept", "")):
            return PlainTextResponse(help_text(view.server))
        stale = view.stale()
        overview = await view.overview()
        refresh = _refresh_seconds(request.query_params.get("refresh"))
        body = render_overview(overview, refresh=refresh, rows=rows)
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

    data, headers = compressed(request, body.encode())
    return Response(
        data,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={"cache-control": "no-cache", "vary": "Accept, Accept-Encoding", **headers},
        background=background,
    )


def compressed(request: Request | None, data: bytes) -> tuple[bytes, dict[str, str]]:
    """``data`` gzipped when the client takes gzip and it is worth it, with
    the header that says so."""
    if request is None or len(data) < _GZIP_MIN:
        return data, {}
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return data, {}
    return gzip.compress(data, compresslevel=5), {"content-encoding": "gzip"}


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
    env.globals.update(
        sparkline=sparkline,
        check_sparkline=check_sparkline,
        status_label=status_label,
        status_html=status_html,
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


class RowCache:
    """Each check's row on the status page but its last cell (the time since
    its last result, which changes every second), drawn again only when what
    it shows changed: the check's newest result, its history (refreshed every
    30 s), its target or its group. A page of 1,000 checks then draws only the
    rows whose check ran since the last answer."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[tuple[Any, ...], Markup]] = {}

    def start(self, check: CheckView) -> Markup:
        key = (check.current, check.history, check.target, check.group, check.status_name)
        kept = self._rows.get(check.name)
        if kept is not None and _same(kept[0], key):
            return kept[1]
        from markupsafe import Markup

        row = Markup(render("_row.html", check=check))
        self._rows[check.name] = (key, row)
        return row

    def forget(self, names: set[str]) -> None:
        """Drop the rows of checks no longer configured."""
        for name in set(self._rows) - names:
            del self._rows[name]


def _same(kept: tuple[Any, ...], key: tuple[Any, ...]) -> bool:
    # The history is compared by identity: a refresh makes a new one.
    return kept[1] is key[1] and kept[0] == key[0] and kept[2:] == key[2:]


def render_overview(
    overview: Any, *, refresh: int | None = None, rows: RowCache | None = None
) -> str:
    """The status page's HTML for an :class:`~anyprobe._serve_view.Overview`
    (``rows``: the rows drawn for earlier answers, reused where nothing changed)."""
    if rows is None:
        rows = RowCache()
    else:
        rows.forget({check.name for group in overview.groups for check in group.checks})
    return render("index.html", overview=overview, now=overview.now, refresh=refresh, rows=rows)


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


def status_html(status: str, summary: str | None = None) -> Markup:
    """A status as the page shows it: an icon, the word, and the summary under them.
    (A function rather than a template macro: a page may show a thousand.)"""
    from markupsafe import Markup, escape

    name = status if status in _LABELS else "unknown"
    html = (
        f'<span class="status s-{name}"><svg class="icon" aria-hidden="true" focusable="false">'
        f'<use href="#icon-{name}"/></svg>{escape(status_label(status))}</span>'
    )
    if summary:
        html += f'<span class="summary">{escape(summary)}</span>'
    return Markup(html)


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


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _short_time(at: float) -> str:
    """``Dec 3 14:03:05 UTC``: a point's time in its tooltip (cheaper than strftime)."""
    t = time.gmtime(at)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday} {t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02} UTC"


#: Each cached history's overview sparkline, drawn once per refresh of the view.
_DRAWN: weakref.WeakKeyDictionary[History, Markup] = weakref.WeakKeyDictionary()


def check_sparkline(check: CheckView) -> Markup:
    """The overview's sparkline of ``check``: drawn once per history the view
    reads from the store (every 30 s), not once per page."""
    history = check.history
    if history is None or not history.recent:
        return sparkline(check.recent)
    drawn = _DRAWN.get(history)
    if drawn is None:
        drawn = _DRAWN[history] = sparkline(history.recent)
    return drawn


def sparkline(records: Sequence[Record], *, large: bool = False) -> Markup:
    """An inline SVG of ``records``' durations, oldest left: a line, and a dot
    per result coloured by its status whose tooltip (``<title>``) gives its
    time, status, duration and phases. Built here rather than in a template:
    a page of a thousand checks draws twenty thousand dots."""
    from markupsafe import Markup, escape

    count = DETAIL_POINTS if large else OVERVIEW_POINTS
    width, height = (600, 60) if large else (120, 24)
    records = records[-count:]
    if not records:
        return Markup('<span class="summary">no results yet</span>')
    if len(records) == 1:  # no line to draw: the one duration, with its phases
        only = records[0]
        title = f' title="{escape(phases_text(only.phases))}"' if only.phases else ""
        return Markup(f'<span class="summary"{title}>{escape(seconds(only.duration))}</span>')
    durations = [r.duration for r in records]
    top = max(durations) or 1.0
    step = width / len(records)
    radius = 2.5 if large else 2
    coordinates = []
    dots = []
    for index, record in enumerate(records):
        x = index * step + step / 2
        y = height - 2 - (record.duration / top) * (height - 4)
        coordinates.append(f"{x:.1f},{y:.1f}")
        status = record.status.value
        tooltip = f"{_short_time(record.at)}: {_LABELS[status]}, {seconds(record.duration)}"
        if record.phases:
            tooltip += f" ({phases_text(record.phases)})"
        css = "" if status == "ok" else f' class="s-{status}"'
        dots.append(
            f'<circle{css} cx="{x:.1f}" cy="{y:.1f}" r="{radius}"><title>{escape(tooltip)}'
            "</title></circle>"
        )
    label = (
        f"Latency of the last {len(records)} results, from {seconds(min(durations))} "
        f"to {seconds(max(durations))}"
    )
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}"><polyline points="{" ".join(coordinates)}"/>'
        f"{''.join(dots)}</svg>"
    )
