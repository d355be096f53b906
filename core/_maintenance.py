"""Maintenance windows of ``anyprobe serve``: when alerts about some checks are silenced.

::

    [[maintenance]]
    name = "nightly backup"
    start = "02:00"            # or a date and time: "2026-12-24T22:00"
    duration = "2h"
    repeat = "weekly"          # "daily", "weekly" or absent (once)
    days = ["sat", "sun"]
    timezone = "Europe/Paris"  # default UTC
    checks = ["db"]            # or labels = {team = "payments"}; neither: every check

During a window an ``[[alert]]`` about a check it covers neither fires nor
reminds (the counts go on); one still failing when the window ends fires then.
An ad-hoc window is opened with ``POST /api/v1/maintenance`` and closed early
with ``DELETE /api/v1/maintenance/ID`` (:func:`maintenance_routes`).

This module also holds what the alert tables share with it: durations
(:func:`parse_duration`) and which checks a table covers (:class:`Selector`).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ._errors import ConfigError, did_you_mean
from ._options import SettingsModel

if TYPE_CHECKING:
    from ._model import Target
    from ._serve_server import ProbeServer

#: Longest maintenance window, ad-hoc or configured (a year).
MAX_DURATION = 366 * 86400.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a text such as ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``.

    Raises ValueError naming the expected shape.
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration: seconds, or a text such as '30s', '5m', '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"{value!r} is not a duration: seconds, or a text such as "
                    "'30s', '5m', '1h30m', '2d'"
                ) from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    else:
        raise ValueError("must be a duration: seconds, or a text such as '30s', '5m', '1h'")
    if not (0 < seconds <= MAX_DURATION):
        raise ValueError(f"a duration must be over 0 and at most {MAX_DURATION / 86400:g} days")
    return seconds


@dataclass(frozen=True)
class Selector:
    """Which checks a table covers: these names, the checks with these labels, or all."""

    checks: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        return not self.checks and not self.labels

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.everything:
            return True
        if name in self.checks:
            return True
        return bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())

    def covered(self, targets: Iterable[Target]) -> tuple[str, ...]:
        """The names of ``targets`` this selector covers."""
        return tuple(t.name for t in targets if self.matches(t.name, t.labels))


def check_names_known(
    names: Sequence[str], known: Sequence[str], fail: Callable[[str], ConfigError]
) -> None:
    """``fail`` (with a did-you-mean) for the first of ``names`` that is no check's."""
    for name in names:
        if name not in known:
            raise fail(f"no [[check]] is named {name!r}{did_you_mean(name, known)}")


class MaintenanceSettings(SettingsModel):
    """A ``[[maintenance]]`` table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, description="Shown on the status page and in the log.")
    start: str = Field(
        description="When it starts: a date and time ('2026-12-24T22:00', in timezone) "
        "or, with repeat, a time of day ('02:00')."
    )
    duration: float = Field(description="How long it lasts: seconds or '2h', '30m'...")
    repeat: Literal["daily", "weekly"] | None = Field(
        None, description="daily or weekly (on days); absent: once."
    )
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list,
        description="Days it happens on (mon...sun); weekly needs them unless start has a date.",
    )
    timezone: str = Field("UTC", description="Time zone of start (an IANA name: Europe/Paris).")
    checks: list[str] = Field(default_factory=list, description="Checks it covers, by name.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Checks it covers, by labels (all must match)."
    )

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _shape(self) -> MaintenanceSettings:
        at = _TIME_OF_DAY.fullmatch(self.start.strip())
        if at is None:
            try:
                dt.datetime.fromisoformat(self.start)
            except ValueError:
                raise ValueError(
                    f"start {self.start!r} is neither a date and time "
                    "('2026-12-24T22:00') nor a time of day ('02:00')"
                ) from None
        elif self.repeat is None:
            raise ValueError("a time of day as start needs repeat = 'daily' or 'weekly'")
        if self.days and self.repeat is None:
            raise ValueError("days needs repeat = 'daily' or 'weekly'")
        if self.repeat == "weekly" and not self.days and at is not None:
            raise ValueError("repeat = 'weekly' needs days (or a date in start)")
        if self.repeat == "daily" and self.duration > 86400:
            raise ValueError("a daily window lasts at most 24h")
        if self.repeat == "weekly" and self.duration > 7 * 86400:
            raise ValueError("a weekly window lasts at most 7 days")
        return self


@dataclass(frozen=True)
class MaintenanceWindow:
    """One window in force (or planned): the page and the API show these.

    ``start`` and ``end`` are aware UTC datetimes; ``checks`` the names of the
    configured checks it covers; ``id`` is set for an ad-hoc window (the
    API's), None for a ``[[maintenance]]`` table's.
    """

    name: str
    start: dt.datetime
    end: dt.datetime
    checks: tuple[str, ...]
    reason: str = ""
    id: str | None = None

    @property
    def title(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "checks": list(self.checks),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Maintenance:
    """A validated ``[[maintenance]]`` table (or an ad-hoc window: ``once``)."""

    name: str
    selector: Selector
    duration: float
    zone: dt.tzinfo
    #: A fixed start (a once-only window, or the first of a repeating one).
    first: dt.datetime | None
    #: The time of day of a repeating window.
    time_of_day: dt.time | None
    repeat: str | None
    days: frozenset[int]
    reason: str = ""
    id: str | None = None

    @classmethod
    def from_settings(cls, settings: MaintenanceSettings) -> Maintenance:
        zone = ZoneInfo(settings.timezone)
        first = None
        at = _TIME_OF_DAY.fullmatch(settings.start.strip())
        if at is None:
            first = dt.datetime.fromisoformat(settings.start)
            if first.tzinfo is None:
                first = first.replace(tzinfo=zone)
            time_of_day = first.astimezone(zone).time().replace(tzinfo=None)
        else:
            time_of_day = dt.time(int(at.group(1)), int(at.group(2)))
        days = frozenset(DAYS.index(day) for day in settings.days)
        if settings.repeat == "weekly" and not days and first is not None:
            days = frozenset({first.astimezone(zone).weekday()})
        return cls(
            name=settings.name,
            selector=Selector(tuple(settings.checks), dict(settings.labels)),
            duration=settings.duration,
            zone=zone,
            first=first,
            time_of_day=time_of_day if settings.repeat else None,
            repeat=settings.repeat,
            days=days,
        )

    @classmethod
    def once(
        cls,
        name: str,
        start: dt.datetime,
        duration: float,
        selector: Selector,
        reason: str = "",
    ) -> Maintenance:
        """An ad-hoc window from ``start`` (aware) for ``duration`` seconds."""
        return cls(
            name=name,
            selector=selector,
            duration=duration,
            zone=dt.UTC,
            first=start,
            time_of_day=None,
            repeat=None,
            days=frozenset(),
            reason=reason,
            id=secrets.token_hex(8),
        )

    def occurrence(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """The (start, end) in UTC of the occurrence in force at ``now`` (aware), or None."""
        length = dt.timedelta(seconds=self.duration)
        if self.repeat is None:
            assert self.first is not None
            if self.first <= now < self.first + length:
                return self.first.astimezone(dt.UTC), (self.first + length).astimezone(dt.UTC)
            return None
        assert self.time_of_day is not None
        local = now.astimezone(self.zone)
        # The occurrences that may still last: today's and those of the days before.
        back = int(self.duration // 86400) + 1
        for offset in range(back + 1):
            day = local.date() - dt.timedelta(days=offset)
            if self.days and day.weekday() not in self.days:
                continue
            # Local wall-clock start, in the zone (a DST gap moves it, as zoneinfo does).
            start = dt.datetime.combine(day, self.time_of_day, tzinfo=self.zone)
            if self.first is not None and start < self.first:
                continue
            if start <= now < start + length:
                return start.astimezone(dt.UTC), (start + length).astimezone(dt.UTC)
        return None

    def window(self, now: dt.datetime, targets: Iterable[Target]) -> MaintenanceWindow | None:
        """The window in force at ``now``, naming the ``targets`` it covers, or None."""
        span = self.occurrence(now)
        if span is None:
            return None
        return MaintenanceWindow(
            self.name, span[0], span[1], self.selector.covered(targets), self.reason, self.id
        )


def parse_maintenance(
    document: Mapping[str, Any],
    fail: Callable[..., ConfigError],
    targets: Sequence[Target],
) -> list[Maintenance]:
    """The ``[[maintenance]]`` tables of a config document; ConfigError names
    the file, line, table and key of the first mistake."""
    raw_tables = document.get("maintenance", [])
    if not isinstance(raw_tables, list):
        raise fail("maintenance must be an array of tables: [[maintenance]]", table="maintenance")
    names = [t.name for t in targets]
    windows = []
    for index, raw in enumerate(raw_tables):
        if not isinstance(raw, dict):
            raise fail("each [[maintenance]] must be a table", table="maintenance", index=index)
        try:
            settings = MaintenanceSettings.model_validate(raw)
        except ValidationError as exc:
            from ._targets import options_error

            error = options_error(exc, MaintenanceSettings, what="[[maintenance]]")
            key = error.field.split(".")[0] if error.field else None
            raise fail(error.message, table="maintenance", index=index, key=key) from None
        check_names_known(
            settings.checks,
            names,
            lambda message, index=index: fail(  # type: ignore[misc]
                message, table="maintenance", index=index, key="checks"
            ),
        )
        windows.append(Maintenance.from_settings(settings))
    return windows


# -- the API: ad-hoc windows --------------------------------------------------------


class AdHocRequest(SettingsModel):
    """The JSON body of ``POST /api/v1/maintenance``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    duration: float = Field(description="Seconds, or '2h', '30m'...")
    checks: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    reason: str = Field("", max_length=500)
    name: str = Field("maintenance", min_length=1, max_length=200)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


#: Ad-hoc windows open at once, at most (each request adds one).
MAX_AD_HOC = 100


def maintenance_routes(server: ProbeServer) -> list[Any]:
    """``GET`` and ``POST /api/v1/maintenance``, ``DELETE /api/v1/maintenance/ID``.

    They change what alerts are sent: with basic-auth users on the listener
    every request needs their credentials (the listener checks them first).
    """
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def problem(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    async def listing(request: Request) -> Response:
        now = dt.datetime.now(dt.UTC)
        windows = server.alerts.active_maintenance(now)
        return JSONResponse({"maintenance": [w.as_dict() for w in windows]})

    async def add(request: Request) -> Response:
        body = await request.body()
        if len(body) > 64 * 1024:
            return problem(413, "body larger than 64 KiB")
        try:
            import json

            wanted = AdHocRequest.model_validate(json.loads(body or b"{}"))
        except (ValueError, ValidationError) as exc:
            message = str(exc).splitlines()[0]
            if isinstance(exc, ValidationError):
                from ._targets import options_error

                error = options_error(exc, AdHocRequest, what="maintenance")
                message = f"{error.field}: {error.message}" if error.field else error.message
            return problem(400, message)
        known = [t.name for t in server.config.all_targets]
        for name in wanted.checks:
            if name not in known:
                return problem(400, f"no check is named {name!r}{did_you_mean(name, known)}")
        if len(server.alerts.ad_hoc) >= MAX_AD_HOC:
            return problem(429, f"{MAX_AD_HOC} ad-hoc maintenance windows are open already")
        window = server.alerts.open_maintenance(
            wanted.name,
            wanted.duration,
            Selector(tuple(wanted.checks), dict(wanted.labels)),
            wanted.reason,
        )
        return JSONResponse(window.as_dict(), status_code=201)

    async def end(request: Request) -> Response:
        ident = request.path_params["ident"]
        if not server.alerts.close_maintenance(ident):
            return problem(404, "no open ad-hoc maintenance window has this id")
        return Response(status_code=204)

    return [
        Route("/api/v1/maintenance", listing, methods=["GET"]),
        Route("/api/v1/maintenance", add, methods=["POST"]),
        Route("/api/v1/maintenance/{ident}", end, methods=["DELETE"]),
    ]
