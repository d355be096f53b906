"""What the status page, the JSON API and the badges of ``anyprobe serve`` show.

:class:`StatusView` reads each check's current status from the server's
latest results (and, with a history store, the store's newest records, so a
replica shows the checks other shards run), and its history from the store:
uptime over 24 h, 7 d and 30 d, latency percentiles, the recent results the
sparkline draws, incidents. The page, the API and the badges render the same
:class:`CheckView` objects, so they never disagree.

The history of every check takes a few store queries; the overview keeps it
for :attr:`StatusView.ttl` seconds and refreshes it after answering
(stale-while-revalidate), so that a page of a thousand checks does not wait
for five thousand queries. The current status is never cached.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import anyio

from ._model import Result, Status
from ._store import HistoryStore, Incident, Latency, Record
from .masking import MIN_SECRET_LENGTH, Masker, is_credential_header, redact_url

if TYPE_CHECKING:
    from ._serve_server import ProbeServer

log = logging.getLogger("anyprobe.serve")

HOUR = 3600.0
DAY = 24 * HOUR
#: The uptime periods shown, by the key the API and the badges use.
UPTIME_PERIODS: dict[str, float] = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
#: Recent results drawn by the overview's sparklines, and by a check's own page.
OVERVIEW_POINTS = 20
DETAIL_POINTS = 100
#: Group of the checks without the ``[serve] group_by`` label.
DEFAULT_GROUP = "Checks"
#: Seconds the overview keeps each check's history before refreshing it.
DEFAULT_TTL = 30.0
#: Seconds the store gets to answer one view before the page shows without history.
STORE_TIMEOUT = 20.0

_SINCE_UNITS = {"s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: 10000-01-01T00:00:00Z: datetime goes no further.
_YEAR_10000 = 253_402_300_800.0


def parse_since(text: str, now: float) -> float:
    """A ``since=`` value as a Unix timestamp: a Unix time (``1764770400``), an
    ISO 8601 date-time (``2026-12-03T10:00:00Z``; UTC when it has no offset) or
    a duration back from ``now`` (``90s``, ``30m``, ``24h``, ``7d``, ``2w``).

    Raises ValueError with a message naming the value.
    """
    value = text.strip()
    found: float | None = None
    relative = _RELATIVE.fullmatch(value)
    if relative:
        found = now - float(relative.group(1)) * _SINCE_UNITS[relative.group(2)]
    else:
        try:
            found = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                pass
            else:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                found = moment.timestamp()
    if found is not None and math.isfinite(found) and 0 <= found < _YEAR_10000:
        return max(found, 0.0)
    if found is not None and math.isfinite(found):
        raise ValueError(f"since={text!r} is out of range (from 1970 to 9999)")
    raise ValueError(
        f"since={text!r} is not a Unix time, an ISO 8601 date-time "
        "(2026-12-03T10:00:00Z) or a duration back from now (30m, 24h, 7d)"
    )


def iso(at: float | None) -> str | None:
    """``at`` (a Unix timestamp) as ISO 8601 UTC, as every output of anyprobe writes times."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat()


def public_target(url: str, probe: str) -> str | None:
    """What the page may show of a check's target URL: scheme, host, port and
    path, never the userinfo or the query (where a token may hide); nothing for
    a push check, whose URL holds its token."""
    if probe == "push" or "://" not in url:
        return None
    origin = redact_url(url, path=False)
    rest = url.partition("://")[2]
    path = rest.partition("/")[2] if "/" in rest else ""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return f"{origin}/{path}" if path else origin


def query_masker(url: str) -> Masker | None:
    """A masker for the credentials a target's query carries (``?token=...``,
    ``?api_key=...``: names that would be credential headers), which the
    probe sends and its trace shows; None when it has none."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    secrets = [
        value
        for key, value in parse_qsl(query)
        if (is_credential_header(key) or key.lower() in ("sig", "signature", "code"))
        and len(value) >= MIN_SECRET_LENGTH
    ]
    return Masker(secrets) if secrets else None


def masked_record(record: Record, masker: Masker | None) -> Record:
    if masker is None:
        return record
    return replace(
        record,
        summary=masker.text(record.summary),
        trace=tuple(masker.text(line) for line in record.trace),
    )


def masked_incident(incident: Incident, masker: Masker | None) -> Incident:
    if masker is None:
        return incident
    return replace(incident, summary=masker.text(incident.summary))


def trace_lines(result: Result) -> tuple[str, ...]:
    """A result's ``--explain`` trace as the history keeps it (see Record.from_result)."""
    return tuple(f"{event.at * 1000:9.3f} ms  {event.message}" for event in result.trace)


@dataclass(frozen=True, slots=True)
class Current:
    """A check's newest result, from this process or from the store."""

    status: Status
    summary: str
    at: float
    duration: float
    phases: Mapping[str, float]
    error: str | None
    trace: tuple[str, ...]

    @classmethod
    def from_result(cls, result: Result) -> Current:
        return cls(
            status=result.status,
            summary=result.summary,
            at=result.started.timestamp() + result.duration,
            duration=result.duration,
            phases=dict(result.phases),
            error=result.error.type if result.error is not None else None,
            trace=trace_lines(result) if result.status is not Status.OK else (),
        )

    @classmethod
    def from_record(cls, record: Record) -> Current:
        return cls(
            record.status,
            record.summary,
            record.at,
            record.duration,
            record.phases,
            record.error,
            record.trace,
        )

    def masked(self, masker: Masker | None) -> Current:
        if masker is None:
            return self
        return replace(
            self,
            summary=masker.text(self.summary),
            trace=tuple(masker.text(line) for line in self.trace),
        )

    def as_record(self, check: str) -> Record:
        return Record(
            check, self.at, self.status, self.summary, self.duration, self.phases, self.error,
            self.trace,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class History:
    """A check's history as the page shows it (None values: no results in the period)."""

    uptime: Mapping[str, float | None]
    latency: Latency
    recent: Sequence[Record]
    computed: float


NO_LATENCY = Latency(0, None, None, None)


@dataclass(frozen=True, slots=True)
class CheckView:
    """One check as the page, the API and the badges show it.

    ``status`` is None for a check that has not run yet; ``history`` is None
    without a store (or while the store does not answer).
    """

    name: str
    group: str
    labels: Mapping[str, str]
    probe: str | None
    target: str | None
    current: Current | None
    history: History | None
    incident: Incident | None = None

    @property
    def status(self) -> Status | None:
        return None if self.current is None else self.current.status

    @property
    def status_name(self) -> str:
        """``ok``, ``warning``, ``critical``, ``unknown``; ``pending`` before a first result."""
        return "pending" if self.current is None else self.current.status.value

    def uptime(self, period: str) -> float | None:
        return None if self.history is None else self.history.uptime.get(period)

    @property
    def latency(self) -> Latency:
        return NO_LATENCY if self.history is None else self.history.latency

    @property
    def recent(self) -> Sequence[Record]:
        """The newest results, oldest first: the store's, else this process' last one."""
        if self.history is not None and self.history.recent:
            return self.history.recent
        return () if self.current is None else (self.current.as_record(self.name),)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    checks: Sequence[CheckView]

    @property
    def status_name(self) -> str:
        return overall_status(self.checks)


@dataclass(frozen=True, slots=True)
class Notice:
    """A line about the monitor itself: active maintenance, a firing alert, a failing notifier."""

    title: str
    detail: str = ""
    start: float | None = None
    end: float | None = None
    checks: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the status page and ``/api/v1/checks`` show."""

    title: str
    now: float
    groups: Sequence[Group]
    incidents: Sequence[Incident]
    maintenance: Sequence[Notice] = ()
    alerts: Sequence[Notice] = ()
    notifier_failures: Sequence[Notice] = ()
    has_store: bool = False
    history_error: str | None = None

    @property
    def checks(self) -> list[CheckView]:
        return [check for group in self.groups for check in group.checks]

    @property
    def status_name(self) -> str:
        return overall_status(self.checks)


@dataclass(frozen=True, slots=True)
class Detail:
    """One check's page: its view, its recent results, last failures and incidents."""

    check: CheckView
    results: Sequence[Record]
    failures: Sequence[Record]
    incidents: Sequence[Incident]
    has_store: bool
    history_error: str | None = None


def overall_status(checks: Iterable[CheckView]) -> str:
    """The worst status of ``checks`` (pending ones aside); ``pending`` when none has run."""
    worst: Status | None = None
    for check in checks:
        status = check.status
        if status is not None and (worst is None or status.severity > worst.severity):
            worst = status
    return "pending" if worst is None else worst.value


@dataclass
class _Cache:
    histories: dict[str, History] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)
    refreshed: float = -math.inf
    refreshing: bool = False
    error: str | None = None


class StatusView:
    """The data of the status page, the API and the badges of one server."""

    def __init__(self, server: ProbeServer, *, ttl: float = DEFAULT_TTL) -> None:
        self.server = server
        self.ttl = ttl
        self._cache = _Cache()
        self._maskers: dict[str, Masker | None] = {}
        self._maskers_of: object = None

    def masker(self, name: str) -> Masker | None:
        """The masker of check ``name``'s query credentials (rebuilt after a reload)."""
        config = self.server.config
        if self._maskers_of is not config:
            self._maskers = {t.name: query_masker(t.url) for t in config.all_targets}
            self._maskers_of = config
        return self._maskers.get(name)

    # -- what the server knows ---------------------------------------------------

    @property
    def store(self) -> HistoryStore | None:
        store: HistoryStore | None = getattr(self.server, "store", None)
        return store

    def _settings(self) -> Any:
        from ._serve_server import serve_tables

        return serve_tables(self.server.config).settings

    @property
    def title(self) -> str:
        return str(getattr(self._settings(), "title", None) or "Status")

    def _interval(self, name: str) -> float:
        settings = self._settings()
        return float(self.server.config.intervals.get(name, settings.interval))

    async def _store_latest(self) -> dict[str, Record]:
        store = self.store
        if store is None:
            return {}
        try:
            with anyio.fail_after(STORE_TIMEOUT):
                return await store.latest()
        except Exception as exc:
            self._cache.error = _store_error(exc)
            return {}

    async def _currents(self) -> dict[str, Current]:
        """Each check's newest result: the store's, unless this process has a newer one."""
        stored = await self._store_latest()
        currents = {name: Current.from_record(record) for name, record in stored.items()}
        for name, result in list(self.server.latest.items()):
            mine = Current.from_result(result)
            theirs = currents.get(name)
            if theirs is None or mine.at >= theirs.at:
                currents[name] = mine
        return {name: current.masked(self.masker(name)) for name, current in currents.items()}

    def _known(self) -> dict[str, tuple[Mapping[str, str], str | None, str | None]]:
        """The config's checks: name -> (labels, probe, shown target)."""
        known: dict[str, tuple[Mapping[str, str], str | None, str | None]] = {}
        for target in self.server.config.all_targets:
            known[target.name] = (
                dict(target.labels),
                target.probe,
                public_target(target.display_url, target.probe),
            )
        return known

    def _group_of(self, labels: Mapping[str, str]) -> str:
        label = getattr(self._settings(), "group_by", None)
        if label and labels.get(label):
            return labels[label]
        return DEFAULT_GROUP

    def _check_view(
        self,
        name: str,
        known: Mapping[str, tuple[Mapping[str, str], str | None, str | None]],
        current: Current | None,
        history: History | None,
        incident: Incident | None,
    ) -> CheckView:
        labels, probe, target = known.get(name, ({}, None, None))
        result = self.server.latest.get(name)
        if result is not None:
            labels = labels or dict(result.labels)
            probe = probe or result.probe
            if target is None and name not in known:
                target = public_target(result.target, result.probe)
        return CheckView(
            name=name,
            group=self._group_of(labels),
            labels=labels,
            probe=probe,
            target=target,
            current=current,
            history=history,
            incident=incident,
        )

    # -- the overview -------------------------------------------------------------

    def stale(self, now: float | None = None) -> bool:
        """Whether the overview's histories are older than :attr:`ttl`."""
        now = time.time() if now is None else now
        return self.store is not None and now - self._cache.refreshed >= self.ttl

    async def overview(self, *, refresh: bool = False) -> Overview:
        """The status page's data. Histories come from the cache; a cold cache
        (or ``refresh``) is filled first, a stale one is left for
        :meth:`refresh` (which the page runs after answering)."""
        now = time.time()
        self._cache.error = None
        currents = await self._currents()
        known = self._known()
        names = sorted({*known, *currents})
        store = self.store
        if store is not None and (refresh or (not self._cache.histories and names)):
            await self.refresh(names)
        histories = self._cache.histories
        open_incidents = {i.check: i for i in self._cache.incidents if i.ended is None}
        views = [
            self._check_view(
                name, known, currents.get(name), histories.get(name), open_incidents.get(name)
            )
            for name in names
        ]
        groups: dict[str, list[CheckView]] = {}
        for view in views:
            groups.setdefault(view.group, []).append(view)
        ordered = sorted(groups.items(), key=lambda item: (item[0] == DEFAULT_GROUP, item[0]))
        maintenance, alerts, failures = await self._alert_notices(now)
        return Overview(
            title=self.title,
            now=now,
            groups=[Group(name, checks) for name, checks in ordered],
            incidents=list(self._cache.incidents),
            maintenance=maintenance,
            alerts=alerts,
            notifier_failures=failures,
            has_store=store is not None,
            history_error=self._cache.error,
        )

    async def refresh(self, names: Sequence[str] | None = None) -> None:
        """Read every check's history from the store again (one refresh at a time)."""
        store = self.store
        cache = self._cache
        if store is None or cache.refreshing:
            return
        cache.refreshing = True
        try:
            if names is None:
                names = sorted({*self._known(), *self.server.latest})
            now = time.time()
            histories: dict[str, History] = {}
            with anyio.fail_after(STORE_TIMEOUT + len(names) * 0.05):
                for name in names:
                    histories[name] = await self._history(store, name, now, OVERVIEW_POINTS)
                found = await store.incidents(None, now - 7 * DAY, limit=20)
                incidents = [masked_incident(i, self.masker(i.check)) for i in found]
            cache.histories, cache.incidents, cache.refreshed = histories, incidents, now
            cache.error = None
        except Exception as exc:
            cache.error = _store_error(exc)
        finally:
            cache.refreshing = False

    async def _history(self, store: HistoryStore, name: str, now: float, points: int) -> History:
        uptime = {key: await store.uptime(name, now - span) for key, span in UPTIME_PERIODS.items()}
        latency = await store.latency(name, now - DAY)
        recent = await recent_records(store, name, now, self._interval(name), points)
        masker = self.masker(name)
        return History(uptime, latency, [masked_record(r, masker) for r in recent], now)

    async def _alert_notices(self, now: float) -> tuple[list[Notice], list[Notice], list[Notice]]:
        """Active maintenance, firing alerts and failing notifiers, from
        ``server.alerts`` when the server has one; a broken one shows nothing."""
        alerts = getattr(self.server, "alerts", None)
        if alerts is None:
            return [], [], []
        windows = await _call(alerts, "active_maintenance", now)
        maintenance = [_maintenance_notice(window) for window in windows]
        firing = [_alert_notice(a) for a in await _call(alerts, "firing")]
        failures_map = await _call(alerts, "notifier_failures")
        failures = []
        if isinstance(failures_map, Mapping):
            failures = [Notice(str(k), str(v)) for k, v in sorted(failures_map.items())]
        return maintenance, firing, failures

    # -- one check --------------------------------------------------------------

    async def check_view(self, name: str) -> CheckView | None:
        """One check as the overview shows it (None for an unknown check), from
        the overview's cached history when fresh, else from the store."""
        self._cache.error = None
        currents = await self._currents()
        known = self._known()
        if name not in known and name not in currents:
            return None
        store = self.store
        history = self._cache.histories.get(name)
        if store is not None and (history is None or self.stale()):
            now = time.time()
            try:
                with anyio.fail_after(STORE_TIMEOUT):
                    history = await self._history(store, name, now, OVERVIEW_POINTS)
            except Exception as exc:
                self._cache.error = _store_error(exc)
        return self._check_view(name, known, currents.get(name), history, None)

    async def names(self) -> set[str]:
        return {*self._known(), *self.server.latest, *(await self._store_latest())}

    async def detail(self, name: str) -> Detail | None:
        """One check's page (None for a check this server does not know)."""
        self._cache.error = None
        currents = await self._currents()
        known = self._known()
        if name not in known and name not in currents:
            return None
        current = currents.get(name)
        store = self.store
        history: History | None = None
        results: list[Record] = []
        failures: list[Record] = []
        incidents: list[Incident] = []
        if store is not None:
            now = time.time()
            try:
                with anyio.fail_after(STORE_TIMEOUT):
                    history = await self._history(store, name, now, DETAIL_POINTS)
                    results = list(history.recent)
                    week = await store.results(name, now - 7 * DAY, limit=100_000)
                    masker = self.masker(name)
                    failures = [
                        masked_record(r, masker) for r in week if r.status is not Status.OK
                    ][-5:]
                    incidents = [
                        masked_incident(i, masker)
                        for i in await store.incidents(name, now - 30 * DAY, limit=20)
                    ]
            except Exception as exc:
                self._cache.error = _store_error(exc)
        if not results and current is not None:
            results = [current.as_record(name)]
        if not failures and current is not None and current.status is not Status.OK:
            failures = [current.as_record(name)]
        failures.reverse()
        open_incident = next((i for i in incidents if i.ended is None), None)
        view = self._check_view(name, known, current, history, open_incident)
        return Detail(view, results, failures, incidents, store is not None, self._cache.error)

    async def results(self, name: str, since: float, limit: int) -> list[Record] | None:
        """``name``'s results since ``since``, oldest first (None for an unknown check)."""
        if name not in await self.names():
            return None
        store = self.store
        if store is None:
            result = self.server.latest.get(name)
            if result is None:
                return []
            current = Current.from_result(result).masked(self.masker(name))
            return [current.as_record(name)] if current.at >= since else []
        with anyio.fail_after(STORE_TIMEOUT):
            found = await store.results(name, since, limit=limit)
        masker = self.masker(name)
        return [masked_record(record, masker) for record in found]

    async def incidents(self, check: str | None, since: float, limit: int) -> list[Incident]:
        """Incidents since ``since``, newest first; none without a store."""
        store = self.store
        if store is None:
            return []
        with anyio.fail_after(STORE_TIMEOUT):
            found = await store.incidents(check, since, limit=limit)
        return [masked_incident(i, self.masker(i.check)) for i in found]


async def recent_records(
    store: HistoryStore, name: str, now: float, interval: float, points: int
) -> list[Record]:
    """``name``'s newest ``points`` records, oldest first. The store answers
    oldest first from a start time, so the start is guessed from the check's
    interval, then paged forward when the guess held more than a page."""
    since = now - max(interval, 1.0) * (points + 2)
    limit = points * 4
    records = await store.results(name, since, limit=limit)
    for _ in range(50):  # bounded: a wrong interval costs a few pages, never a loop
        if len(records) < limit:
            break
        last = records[-1].at
        more = [r for r in await store.results(name, last, limit=limit) if r.at > last]
        if not more:
            break
        records = records[-points:] + more
    if len(records) < points:
        # Too few in the interval's window (a slower check, or one that stopped): look further.
        older = await store.results(name, now - 30 * DAY, limit=100_000)
        if len(older) > len(records):
            records = older
    return records[-points:]


async def _call(obj: Any, method: str, *args: Any) -> Any:
    """``obj.method(*args)``, awaited when it is a coroutine; [] when it fails."""
    function = getattr(obj, method, None)
    if function is None:
        return []
    try:
        value = function(*args)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        log.warning("status page: %s.%s failed: %s", type(obj).__name__, method, exc)
        return []
    return value if value is not None else []


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def _maintenance_notice(window: Any) -> Notice:
    title = getattr(window, "title", None) or getattr(window, "name", None) or "Maintenance"
    checks = getattr(window, "checks", None) or ()
    return Notice(
        title=str(title),
        start=_timestamp(getattr(window, "start", None)),
        end=_timestamp(getattr(window, "end", None)),
        checks=[str(c) for c in checks] if not isinstance(checks, str) else [checks],
    )


def _alert_notice(alert: Any) -> Notice:
    title = getattr(alert, "check", None) or getattr(alert, "name", None) or str(alert)
    parts = [
        str(part)
        for part in (getattr(alert, "alert", None), getattr(alert, "severity", None))
        if part
    ]
    since = getattr(alert, "since", None) or getattr(alert, "started", None)
    return Notice(title=str(title), detail=" ".join(parts), start=_timestamp(since))


def _store_error(exc: BaseException) -> str:
    log.warning("status page: the history store did not answer: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, TimeoutError):
        return "the history store did not answer in time"
    return f"the history store is unavailable ({type(exc).__name__})"


#: What the page, the API and badges show for a missing figure.
NONE = "\N{EN DASH}"


def help_text(server: ProbeServer) -> str:
    """The endpoints, as /-/help (and / for a client asking for text/plain) lists them."""
    modules = ", ".join(sorted(server.modules))
    return (
        "anyprobe serve\n\n"
        "/                              the status page (this list for Accept: text/plain)\n"
        "/check/NAME                    one check's page: history, failures, incidents\n"
        "/badge/NAME/status.svg         badges: status, uptime-7d, latency (.json: shields.io)\n"
        "/api/v1/checks                 the checks as JSON (and /results, /api/v1/incidents)\n"
        "/api/v1/maintenance            maintenance windows: GET, POST, DELETE /ID\n"
        "/push/TOKEN                    a push check's result (GET or POST)\n"
        "/probe?target=URL&module=NAME  probe a target (modules: " + modules + ")\n"
        "/probe?...&debug=true          the probe's trace, metrics and module\n"
        "/metrics                       the server's own metrics and scheduled checks\n"
        "/-/healthy                     200 while serving\n"
        "POST /-/reload                 re-read the config file\n"
        "/-/help                        this list\n"
    )


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
    if value < 0.0001:
        return f"{value * 1_000_000:.0f} \N{MICRO SIGN}s"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.0095 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"
