"""The JSON API of ``anyprobe serve``'s status page, under ``/api/v1/``.

- ``GET /api/v1/checks``: every check's status, summary, uptime, latency, group, labels;
- ``GET /api/v1/checks/NAME/results?since=24h&limit=1000``: NAME's results, oldest first;
- ``GET /api/v1/incidents?since=7d&check=NAME``: incidents, newest first.

``since`` is a Unix time, an ISO 8601 date-time or a duration back from now
(``30m``, ``24h``, ``7d``). A bad parameter is ``400`` and an unknown check
``404``, each with ``{"error": "one line"}``. Times are ISO 8601 UTC, durations
seconds; keys may be added over time, never renamed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._serve_view import (
    UPTIME_PERIODS,
    CheckView,
    Overview,
    StatusView,
    iso,
    parse_since,
)
from ._store import Incident, Record

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class BadParameter(ValueError):
    """A query parameter the API cannot use: a 400 with this message."""


def api_routes(view: StatusView) -> list[BaseRoute]:
    """``/api/v1/checks``, ``/api/v1/checks/NAME/results`` and ``/api/v1/incidents``."""
    from starlette.background import BackgroundTask
    from starlette.routing import Route

    async def checks(request: Request) -> Response:
        stale = view.stale()
        overview = await view.overview()
        background = BackgroundTask(view.refresh) if stale and overview.has_store else None
        return _json(overview_json(overview), background=background, request=request)

    async def results(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            since = _since(request, "24h")
            limit = _limit(request)
        except BadParameter as exc:
            return _error(400, str(exc))
        records = await view.results(name, since, limit)
        if records is None:
            return _error(404, f"no check named {name!r}")
        return _json(
            request=request,
            document={
                "check": name,
                "since": iso(since),
                "history": view.store is not None,
                "results": [record_json(r) for r in records],
            },
        )

    async def incidents(request: Request) -> Response:
        check = request.query_params.get("check") or None
        try:
            since = _since(request, "7d")
            limit = _limit(request, default=100)
        except BadParameter as exc:
            return _error(400, str(exc))
        if check is not None and check not in await view.names():
            return _error(404, f"no check named {check!r}")
        found = await view.incidents(check, since, limit)
        return _json(
            {
                "since": iso(since),
                "history": view.store is not None,
                "incidents": [incident_json(i) for i in found],
            },
            request=request,
        )

    return [
        Route("/api/v1/checks", checks, methods=["GET", "HEAD"]),
        Route("/api/v1/checks/{name:path}/results", results, methods=["GET", "HEAD"]),
        Route("/api/v1/incidents", incidents, methods=["GET", "HEAD"]),
    ]


def _since(request: Request, default: str) -> float:
    try:
        return parse_since(request.query_params.get("since") or default, time.time())
    except ValueError as exc:
        raise BadParameter(str(exc)) from None


def _limit(request: Request, default: int = DEFAULT_LIMIT) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadParameter(f"limit={text!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def _json(
    document: Mapping[str, Any],
    *,
    status: int = 200,
    background: Any = None,
    request: Request | None = None,
) -> Response:
    """A JSON answer, gzipped for a client that takes it (``request`` given)."""
    from starlette.responses import Response

    from ._serve_page import compressed

    body = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data, headers = compressed(request, body.encode())
    return Response(
        data,
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-cache", **headers},
        background=background,
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status=status)


def overview_json(overview: Overview) -> dict[str, Any]:
    """``/api/v1/checks``' document."""
    return {
        "status": overview.status_name,
        "generated": iso(overview.now),
        "history": overview.has_store,
        "history_error": overview.history_error,
        "maintenance": [
            {"title": n.title, "start": iso(n.start), "end": iso(n.end), "checks": list(n.checks)}
            for n in overview.maintenance
        ],
        "checks": [check_json(check) for check in overview.checks],
    }


def check_json(check: CheckView) -> dict[str, Any]:
    """One check in ``/api/v1/checks``."""
    current = check.current
    latency = check.latency
    return {
        "name": check.name,
        "group": check.group,
        "labels": dict(check.labels),
        "probe": check.probe,
        "target": check.target,
        "status": check.status_name,
        "summary": current.summary if current else None,
        "last_run": iso(current.at) if current else None,
        "duration": current.duration if current else None,
        "phases": dict(current.phases) if current else {},
        "error": current.error if current else None,
        "uptime": {period: check.uptime(period) for period in UPTIME_PERIODS},
        "latency": {
            "period": "24h",
            "count": latency.count,
            "p50": latency.p50,
            "p95": latency.p95,
            "p99": latency.p99,
        },
        "incident": incident_json(check.incident) if check.incident else None,
    }


def record_json(record: Record) -> dict[str, Any]:
    """One result in ``/api/v1/checks/NAME/results``."""
    return {
        "at": iso(record.at),
        "status": record.status.value,
        "summary": record.summary,
        "duration": record.duration,
        "phases": dict(record.phases),
        "error": record.error,
        "trace": list(record.trace),
    }


def incident_json(incident: Incident) -> dict[str, Any]:
    """One incident in ``/api/v1/incidents``."""
    return {
        "check": incident.check,
        "status": incident.status.value,
        "summary": incident.summary,
        "started": iso(incident.started),
        "ended": iso(incident.ended),
        "duration": incident.duration,
    }
