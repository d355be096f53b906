"""Badges of ``anyprobe serve``'s checks, for READMEs and wikis.

``GET /badge/NAME/KIND.svg`` is a small SVG (shields.io's flat style);
``GET /badge/NAME/KIND.json`` the same badge as a shields.io endpoint (for
``https://img.shields.io/endpoint?url=...``). KIND is ``status``,
``uptime-24h``, ``uptime-7d``, ``uptime-30d`` or ``latency`` (the median
over 24 hours, else the last result's duration). ``?label=`` replaces the
label (the check's name). Every text is escaped; answers may be cached for
:data:`MAX_AGE` seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from ._serve_view import UPTIME_PERIODS, CheckView, StatusView, percent, seconds

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

MAX_AGE = 60
KINDS = ("status", *(f"uptime-{period}" for period in UPTIME_PERIODS), "latency")

#: shields.io's colour names, and the shade our SVG draws each with (white
#: text on every one of them reads at a contrast of 4.5:1 or more).
COLORS = {
    "brightgreen": "#2b7a2f",
    "green": "#3c7d0e",
    "yellowgreen": "#6b6e0a",
    "yellow": "#8a6500",
    "orange": "#b34400",
    "red": "#c62828",
    "blue": "#0b62a4",
    "lightgrey": "#666666",
}
_STATUS = {
    "ok": ("up", "brightgreen"),
    "warning": ("degraded", "yellow"),
    "critical": ("down", "red"),
    "unknown": ("unknown", "lightgrey"),
    "pending": ("pending", "lightgrey"),
}


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    message: str
    color: str

    def shields(self) -> dict[str, object]:
        """The shields.io endpoint document."""
        return {"schemaVersion": 1, "label": self.label, "message": self.message,
                "color": self.color}  # fmt: skip

    def svg(self) -> str:
        """The badge as an SVG image, shields.io's flat style."""
        left = _text_width(self.label) + 10
        right = _text_width(self.message) + 10
        width = left + right
        fill = COLORS.get(self.color, COLORS["lightgrey"])
        label, message = escape(self.label), escape(self.message)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
            f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
            '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
            'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
            f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
            f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
            f'<rect x="{left}" width="{right}" height="20" fill="{fill}"/>'
            f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
            '<g fill="#fff" text-anchor="middle" '
            'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
            f'<text x="{left / 2}" y="15" fill="#010101" fill-opacity=".3">{label}</text>'
            f'<text x="{left / 2}" y="14">{label}</text>'
            f'<text x="{left + right / 2}" y="15" fill="#010101" fill-opacity=".3">{message}</text>'
            f'<text x="{left + right / 2}" y="14">{message}</text></g></svg>'
        )


_NARROW = frozenset("fijlrtI.,:;!|()[] '")
_WIDE = frozenset("mwMW%@")


def _text_width(text: str) -> int:
    """Roughly how wide ``text`` is in 11 px Verdana (no font metrics at hand)."""
    return sum(4 if c in _NARROW else 10 if c in _WIDE else 7 for c in text)


def uptime_color(share: float) -> str:
    if share >= 0.999:
        return "brightgreen"
    if share >= 0.99:
        return "green"
    if share >= 0.97:
        return "yellowgreen"
    if share >= 0.95:
        return "yellow"
    if share >= 0.90:
        return "orange"
    return "red"


def make_badge(check: CheckView, kind: str, label: str | None = None) -> Badge:
    """The badge ``kind`` of ``check``."""
    if kind == "status":
        message, color = _STATUS[check.status_name]
        return Badge(label or check.name, message, color)
    if kind.startswith("uptime-"):
        period = kind.removeprefix("uptime-")
        share = check.uptime(period)
        name = label or f"uptime {period}"
        if share is None:
            return Badge(name, "no data", "lightgrey")
        return Badge(name, percent(share), uptime_color(share))
    latency = check.latency.p50
    if latency is None and check.current is not None:
        latency = check.current.duration
    if latency is None:
        return Badge(label or "latency", "no data", "lightgrey")
    return Badge(label or "latency", seconds(latency), "blue")


def badge_route(view: StatusView) -> BaseRoute:
    """``/badge/NAME/KIND.svg`` and ``/badge/NAME/KIND.json``."""
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def badge(request: Request) -> Response:
        name = request.path_params["name"]
        kind, dot, extension = request.path_params["file"].rpartition(".")
        if not dot or kind not in KINDS or extension not in ("svg", "json"):
            known = ", ".join(f"{k}.svg, {k}.json" for k in KINDS)
            return PlainTextResponse(f"No such badge: known badges are {known}\n", 404)
        check = await view.check_view(name)
        if check is None:
            return PlainTextResponse(f"No check named {name!r}\n", 404)
        made = make_badge(check, kind, request.query_params.get("label") or None)
        headers = {"cache-control": f"max-age={MAX_AGE}"}
        if extension == "json":
            body = json.dumps(made.shields(), ensure_ascii=False)
            return Response(body, media_type="application/json", headers=headers)
        return Response(made.svg(), media_type="image/svg+xml; charset=utf-8", headers=headers)

    return Route("/badge/{name:path}/{file}", badge, methods=["GET", "HEAD"])
