"""Alerts of ``anyprobe serve``: when a failing check is worth telling someone, and whom.

::

    [[alert]]
    name = "pager"
    checks = ["api", "db"]        # or labels = {team = "payments"}; neither: every check
    failure_threshold = 3         # results failing in a row before it fires
    success_threshold = 2         # ok results in a row before it resolves
    reminder_every = "1h"         # notify again while it keeps failing
    send_resolved = true
    severity = "critical"
    notify = ["oncall"]           # [[reporter]] tables by name (default: every notifier)

A failure is a ``critical`` or ``unknown`` result; ``on = "warning"`` counts
``warning`` results as failures too. :class:`AlertEngine` keeps one state per
alert and check (results failing and ok in a row, firing or not, when it last
notified), driven by every scheduled result (``ProbeServer.record``) and by a
timer for reminders. Notices go to the notifiers' own bounded queues: a
notifier that is slow or down never holds a check up. Maintenance windows
(:mod:`anyprobe._maintenance`) and a failing ``[serve] connectivity`` check
hold back firing and reminders; the counts go on.

The state is kept in the history store (``get_state``/``put_state``) when the
server has one, so a restart neither repeats an alert nor forgets one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._alerts_config import AlertRule, parse_alerts
from ._maintenance import Maintenance, MaintenanceWindow, Selector
from ._model import Result, RunSummary, Status, Target
from ._notify import AlertNotice, Notifier
from ._reporter import ReportContext, Reporter, ResultStream

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from prometheus_client import CollectorRegistry

    from ._store import HistoryStore

__all__ = ["AlertEngine", "AlertRule", "FiringAlert", "parse_alerts"]

log = logging.getLogger("anyprobe.alerts")

#: Key of the engine's state in the history store.
STATE_KEY = "alerts"
STATE_VERSION = 1
#: Notices waiting for one notifier at most; more are dropped and counted as failed.
NOTICE_QUEUE = 1024
#: Seconds between two writes of the state to the store, at least.
STATE_WRITE_EVERY = 1.0
#: Seconds the state's load and each write may take.
STATE_TIMEOUT = 10.0
#: Seconds between two looks for reminders due, at most and at least.
MAX_TICK = 30.0
MIN_TICK = 0.05


# -- the engine ----------------------------------------------------------------------


@dataclass
class PairState:
    """One alert's state for one check."""

    failures: int = 0
    successes: int = 0
    firing: bool = False
    #: Unix time of the first failing result of the current run of failures.
    since: float | None = None
    #: Unix time of the last firing or reminder notified.
    notified_at: float | None = None
    status: str = Status.OK.value
    summary: str = ""

    @property
    def idle(self) -> bool:
        return not self.firing and self.failures == 0

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> PairState | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                failures=int(raw.get("failures", 0)),
                successes=int(raw.get("successes", 0)),
                firing=bool(raw.get("firing", False)),
                since=_number(raw.get("since")),
                notified_at=_number(raw.get("notified_at")),
                status=str(raw.get("status", "ok")),
                summary=str(raw.get("summary", "")),
            )
        except (TypeError, ValueError):
            return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class FiringAlert:
    """An alert firing for one check, for the status page."""

    alert: str
    check: str
    severity: str
    since: dt.datetime | None
    failures: int
    summary: str
    silenced: bool = False


@dataclass
class _Channel:
    name: str
    reporter: Reporter[Any]
    send: Any
    receive: Any
    done: anyio.Event = field(default_factory=anyio.Event)


class _Session:
    """The notifiers of one config run: their queues and tasks."""

    def __init__(self, channels: dict[int, _Channel]) -> None:
        self.channels = channels
        self.failures: list[str] = []

    def close(self) -> None:
        for channel in self.channels.values():
            channel.send.close()


class AlertEngine:
    """The alerts of a server: rules, maintenance windows, the state of every
    alert and check, and the notices sent.

    ``clock`` gives Unix time (tests pass their own); every method taking
    ``now`` uses it when ``now`` is None.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        store: Callable[[], HistoryStore | None] = lambda: None,
    ) -> None:
        self.clock = clock
        self._store = store
        self.rules: list[AlertRule] = []
        self.windows: list[Maintenance] = []
        self.ad_hoc: dict[str, Maintenance] = {}
        self.connectivity: str | None = None
        self.offline = False
        self.targets: list[Target] = []
        self.state: dict[tuple[str, str], PairState] = {}
        self._rules_of: dict[str, list[AlertRule]] = {}
        self._last: dict[str, Result] = {}
        self._session: _Session | None = None
        self._pending = _Session({})
        self._timer_scope: anyio.CancelScope | None = None
        self._labels: dict[str, Mapping[str, str]] = {}
        self._failures: dict[str, str] = {}
        self._loaded = False
        self._dirty = anyio.Event()
        self._metrics(registry)

    def _metrics(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        registry = registry or CollectorRegistry()
        self.sent_total = Counter(
            "anyprobe_notifications",
            "Alert notices delivered, by notifier ([[reporter]] name).",
            ["notifier"],
            registry=registry,
        )
        self.failed_total = Counter(
            "anyprobe_notifications_failed",
            "Alert notices not delivered (after their retries, or dropped), by notifier.",
            ["notifier"],
            registry=registry,
        )
        self.firing_gauge = Gauge(
            "anyprobe_alerts_firing",
            "Alerts firing now (one per alert and check).",
            registry=registry,
        )
        self.firing_gauge.set_function(lambda: sum(s.firing for s in self.state.values()))

    # -- config ----------------------------------------------------------------

    def configure(
        self,
        rules: Sequence[AlertRule],
        windows: Sequence[Maintenance],
        targets: Sequence[Target],
        connectivity: str | None = None,
    ) -> None:
        """Take a (re)loaded config's tables; the state of alerts and checks
        still configured is kept."""
        self.rules = list(rules)
        self.windows = list(windows)
        self.targets = list(targets)
        self._labels = {t.name: t.labels for t in targets}
        if connectivity != self.connectivity:
            self.offline = False
        self.connectivity = connectivity
        self._rules_of = {}
        for target in targets:
            self._rules_of[target.name] = [
                r for r in self.rules if r.selector.matches(target.name, target.labels)
            ]
        wanted = {(r.name, t) for t, rs in self._rules_of.items() for r in rs}
        self.state = {k: v for k, v in self.state.items() if k in wanted}

    @property
    def routed(self) -> set[int]:
        """Indices of the config's reporters that get alert notices (and so
        not every status change)."""
        return {index for rule in self.rules for index, _ in rule.notify}

    # -- what the page shows ------------------------------------------------------

    def active_maintenance(self, now: dt.datetime | float | None = None) -> list[MaintenanceWindow]:
        """The maintenance windows in force at ``now``."""
        moment = self._datetime(now)
        found = []
        for window in [*self.windows, *self.ad_hoc.values()]:
            active = window.window(moment, self.targets)
            if active is not None:
                found.append(active)
        return found

    def firing(self) -> list[FiringAlert]:
        """Every alert firing now, for each check, oldest first."""
        now = self.clock()
        found = []
        for (alert, check), state in self.state.items():
            if state.firing:
                rule = next((r for r in self.rules if r.name == alert), None)
                found.append(
                    FiringAlert(
                        alert=alert,
                        check=check,
                        severity=rule.severity if rule else "",
                        since=_utc(state.since),
                        failures=state.failures,
                        summary=state.summary,
                        silenced=self._silenced(check, now) is not None,
                    )
                )
        found.sort(key=lambda f: (f.since or dt.datetime.max.replace(tzinfo=dt.UTC), f.check))
        return found

    def notifier_failures(self) -> dict[str, str]:
        """Notifiers whose last notice failed: name -> the error (secrets masked)."""
        return dict(self._failures)

    # -- ad-hoc maintenance ----------------------------------------------------------

    def open_maintenance(
        self, name: str, duration: float, selector: Selector, reason: str = ""
    ) -> MaintenanceWindow:
        """Open a window from now for ``duration`` seconds; it can be closed by its id."""
        now = self._datetime(None)
        self._forget_ended(now)
        window = Maintenance.once(name, now, duration, selector, reason)
        assert window.id is not None
        self.ad_hoc[window.id] = window
        log.info("maintenance %r opened for %g s: %s", name, duration, reason or "no reason given")
        self._changed()
        active = window.window(now, self.targets)
        assert active is not None
        return active

    def close_maintenance(self, ident: str) -> bool:
        """End the ad-hoc window ``ident`` now; False when there is none."""
        window = self.ad_hoc.pop(ident, None)
        if window is None:
            return False
        log.info("maintenance %r closed", window.name)
        self._changed()
        return True

    def _forget_ended(self, now: dt.datetime) -> None:
        for ident, window in list(self.ad_hoc.items()):
            assert window.first is not None
            if window.first + dt.timedelta(seconds=window.duration) <= now:
                del self.ad_hoc[ident]

    # -- results ---------------------------------------------------------------------

    async def observe(self, target: Target, result: Result, now: float | None = None) -> None:
        """Count ``result`` of check ``target`` in every alert covering it, and
        notify what is due. Never waits for a notifier."""
        when = self.clock() if now is None else now
        name = target.name
        if name == self.connectivity:
            self._connectivity(result)
        rules = self._rules_of.get(name)
        if not rules:
            return
        for rule in rules:
            key = (rule.name, name)
            state = self.state.get(key)
            failing = result.status in rule.failing
            if state is None:
                if not failing:
                    continue
                state = self.state[key] = PairState()
            state.status = result.status.value
            state.summary = result.summary
            if failing:
                if state.failures == 0:
                    state.since = when
                state.failures += 1
                state.successes = 0
                self._last[name] = result
                self._due(rule, name, state, when)
            else:
                state.successes += 1
                state.failures = 0
                resolves = state.firing and state.successes >= rule.success_threshold
                # Without a config run to send it, it resolves at the next ok result.
                if resolves and (
                    not rule.send_resolved
                    or self._notify(rule, name, state, result, "resolved", when)
                ):
                    state.firing = False
                    state.notified_at = None
                if not state.firing:
                    state.since = None
                    del self.state[key]
            self._changed()

    def _due(self, rule: AlertRule, check: str, state: PairState, now: float) -> None:
        """Fire, or remind, when it is time and nothing silences it."""
        if state.failures < rule.failure_threshold:
            return
        if not state.firing:
            if self._held(check, now):
                return
            if self._notify(rule, check, state, self._last.get(check), "firing", now):
                state.firing = True
                state.notified_at = now
                self._changed()
            return
        every = rule.reminder_every
        if every is not None and state.notified_at is not None and now - state.notified_at >= every:
            if self._held(check, now):
                return
            if self._notify(rule, check, state, self._last.get(check), "reminder", now):
                state.notified_at = now
                self._changed()

    async def tick(self, now: float | None = None) -> None:
        """Send the reminders due, and fire what a maintenance window or the
        connectivity check held back (the timer calls this)."""
        when = self.clock() if now is None else now
        by_name = {r.name: r for r in self.rules}
        for (alert, check), state in list(self.state.items()):
            rule = by_name.get(alert)
            if rule is not None and state.failures:
                self._due(rule, check, state, when)

    def _held(self, check: str, now: float) -> bool:
        """Whether a firing or reminder about ``check`` is held back now: the
        monitor is offline (connectivity), or a maintenance window covers it."""
        if self.offline and check != self.connectivity:
            return True
        return self._silenced(check, now) is not None

    def _silenced(self, check: str, now: float) -> MaintenanceWindow | None:
        moment = self._datetime(now)
        labels = self._labels.get(check, {})
        for window in [*self.windows, *self.ad_hoc.values()]:
            if window.selector.matches(check, labels):
                active = window.window(moment, ())
                if active is not None:
                    return active
        return None

    def _connectivity(self, result: Result) -> None:
        offline = result.status in (Status.CRITICAL, Status.UNKNOWN)
        if offline and not self.offline:
            log.warning(
                "connectivity check %s is failing (%s): the monitor itself seems offline; "
                "no alert about the other checks is sent until it passes",
                self.connectivity,
                result.summary,
            )
        elif self.offline and not offline:
            log.warning("connectivity check %s passes again: alerts are sent", self.connectivity)
        self.offline = offline

    def _notify(
        self,
        rule: AlertRule,
        check: str,
        state: PairState,
        result: Result | None,
        event: str,
        now: float,
    ) -> bool:
        """Queue the notice to each of ``rule``'s notifiers; False when there is
        no config run to send it (between two, on reload): it is tried again."""
        session = self._session
        if session is None or any(
            index in session.channels and session.channels[index].name != name
            for index, name in rule.notify
        ):
            return False  # between two config runs (a reload): sent at the next result
        since = _utc(state.since)
        notice = AlertNotice(
            alert=rule.name,
            check=check,
            event=event,
            severity=rule.severity,
            since=since.isoformat() if since else "",
            failures=state.failures,
        )
        if result is None:
            result = self._stand_in(check, state, now)
        carried = dataclasses.replace(result, details={**result.details, "alert": notice.as_dict()})
        log.info("alert %s %s for check %s: %s", rule.name, event, check, state.summary)
        for index, name in rule.notify:
            channel = session.channels.get(index)
            if channel is None:
                continue
            try:
                channel.send.send_nowait(carried)
            except anyio.WouldBlock:
                self._delivered(name, False, f"more than {NOTICE_QUEUE} notices waiting")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._delivered(name, False, "the notifier stopped")
        return True

    def _stand_in(self, check: str, state: PairState, now: float) -> Result:
        """A result for a notice whose check's result this process has not seen
        (a reminder just after a restart)."""
        target = next((t for t in self.targets if t.name == check), None)
        return Result(
            name=check,
            target=target.display_url if target else check,
            probe=target.probe if target else "",
            status=Status(state.status)
            if state.status in Status._value2member_map_
            else Status.UNKNOWN,
            summary=state.summary,
            started=_utc(now) or dt.datetime.now(dt.UTC),
            duration=0.0,
            attempts=0,
            phases={},
            metrics={},
            error=None,
            labels=dict(target.labels) if target else {},
        )

    def _delivered(self, notifier: str, ok: bool, error: str) -> None:
        if ok:
            self.sent_total.labels(notifier).inc()
            self._failures.pop(notifier, None)
        else:
            self.failed_total.labels(notifier).inc()
            self._failures[notifier] = error or "failed"
            log.warning("notifier %s failed: %s", notifier, error or "failed")

    # -- a config run: the notifiers, the timer, the state writer ----------------------

    def session(
        self, reporters: Sequence[tuple[str, Reporter[Any]]]
    ) -> list[tuple[str, Reporter[Any]]]:
        """Set up the notifiers of a config run; returns the reporters that get
        every status change instead (those no ``[[alert]]`` notifies)."""
        channels: dict[int, _Channel] = {}
        routed = self.routed
        names = {index: name for rule in self.rules for index, name in rule.notify}
        for index in sorted(routed):
            if index >= len(reporters):
                continue
            reporter = reporters[index][1]
            send, receive = anyio.create_memory_object_stream[Result](NOTICE_QUEUE)
            channels[index] = _Channel(names[index], reporter, send, receive)
            if isinstance(reporter, Notifier):
                reporter.on_delivery = self._listener(names[index])
        self._pending = _Session(channels)
        return [r for i, r in enumerate(reporters) if i not in routed]

    def _listener(self, name: str) -> Callable[[bool, str], None]:
        return lambda ok, error: self._delivered(name, ok, error)

    async def start(self, task_group: TaskGroup, ctx: ReportContext) -> None:
        """Load the state (once), start the notifiers, the timer and the writer."""
        await self.load()
        session = self._pending
        for channel in session.channels.values():
            task_group.start_soon(self._run_notifier, session, channel, ctx)
        self._timer_scope = anyio.CancelScope()
        task_group.start_soon(self._timer, self._timer_scope)
        self._session = session

    def stop(self, summary: RunSummary) -> list[str]:
        """End the config run's notices: their streams close, the notifiers
        send what they hold; returns one line per notifier that failed so far."""
        session, self._session = self._session, None
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        if session is None:
            return []
        session.close()
        return session.failures

    async def _run_notifier(self, session: _Session, channel: _Channel, ctx: ReportContext) -> None:
        try:
            async with channel.receive:
                await channel.reporter.report(ResultStream(channel.receive), ctx)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            line = f"notifier {channel.name} failed: {type(exc).__name__}: {exc}"
            session.failures.append(line)
            log.warning("%s", line)
        finally:
            channel.done.set()

    async def _timer(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                every = [r.reminder_every for r in self.rules if r.reminder_every]
                pause = min([MAX_TICK, *(e / 4 for e in every)])
                await anyio.sleep(max(MIN_TICK, pause))
                await self.tick()
                await self._write()

    # -- the state, kept in the store ----------------------------------------------------

    def _changed(self) -> None:
        self._dirty.set()

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON: each alert and check not idle, and the ad-hoc windows."""
        return {
            "version": STATE_VERSION,
            "pairs": {
                f"{alert}\t{check}": state.as_json()
                for (alert, check), state in self.state.items()
                if not state.idle
            },
            "maintenance": [
                {
                    "id": w.id,
                    "name": w.name,
                    "start": w.first.isoformat() if w.first else None,
                    "duration": w.duration,
                    "checks": list(w.selector.checks),
                    "labels": dict(w.selector.labels),
                    "reason": w.reason,
                }
                for w in self.ad_hoc.values()
            ],
        }

    def restore(self, document: Any) -> None:
        """Take back a :meth:`snapshot` (pairs no longer configured are left out)."""
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            return
        pairs = document.get("pairs")
        for key, raw in (pairs if isinstance(pairs, dict) else {}).items():
            alert, _, check = str(key).partition("\t")
            state = PairState.from_json(raw)
            rules = self._rules_of.get(check, [])
            if state is not None and any(r.name == alert for r in rules):
                self.state[(alert, check)] = state
        for raw in document.get("maintenance") or []:
            try:
                start = dt.datetime.fromisoformat(raw["start"])
                window = Maintenance.once(
                    str(raw["name"]),
                    start,
                    float(raw["duration"]),
                    Selector(tuple(raw.get("checks", ())), dict(raw.get("labels", {}))),
                    str(raw.get("reason", "")),
                )
                window = dataclasses.replace(window, id=str(raw["id"]))
            except (KeyError, TypeError, ValueError):
                continue
            self.ad_hoc[str(window.id)] = window
        self._forget_ended(self._datetime(None))

    async def load(self) -> None:
        """Read the state from the store, once per process."""
        if self._loaded:
            return
        self._loaded = True
        store = self._store()
        if store is None:
            return
        document = None
        try:
            with anyio.fail_after(STATE_TIMEOUT):
                document = await store.get_state(STATE_KEY)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            log.warning(
                "cannot read the alerts' state from the store (%s: %s): counting afresh",
                type(exc).__name__,
                exc,
            )
        self.restore(document)

    async def _write(self) -> None:
        """Write the state to the store when it changed (at most once a second)."""
        store = self._store()
        if store is None or not self._dirty.is_set():
            return
        self._dirty = anyio.Event()
        try:
            with anyio.fail_after(STATE_TIMEOUT):
                await store.put_state(STATE_KEY, self.snapshot())
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._dirty.set()
            log.warning(
                "cannot write the alerts' state to the store: %s: %s", type(exc).__name__, exc
            )
        await anyio.sleep(STATE_WRITE_EVERY)

    async def flush(self) -> None:
        """Write the state now if it changed (at shutdown)."""
        store = self._store()
        if store is None or not self._dirty.is_set():
            return
        self._dirty = anyio.Event()
        with anyio.move_on_after(STATE_TIMEOUT):
            try:
                await store.put_state(STATE_KEY, self.snapshot())
            except Exception as exc:
                log.warning(
                    "cannot write the alerts' state to the store: %s: %s", type(exc).__name__, exc
                )

    def _datetime(self, now: dt.datetime | float | None) -> dt.datetime:
        if isinstance(now, dt.datetime):
            return now
        moment = _utc(self.clock() if now is None else now)
        assert moment is not None
        return moment


def _write_failed(exc: Exception) -> None:
    log.warning("cannot write the alerts' state to the store: %s: %s", type(exc).__name__, exc)


def _status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        return Status.UNKNOWN


def _utc(timestamp: float | None) -> dt.datetime | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)
