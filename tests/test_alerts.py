"""The alert engine: thresholds, reminders, resolution, maintenance, connectivity,
its state kept through a store, and notifiers that fail.

The engine's clock is injected (``clock=``, ``now=``): no test sleeps for a
reminder or a window, and none asserts on wall-clock time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

import anyprobe
from anyprobe import PluginManager, ReportContext, ReporterOptions, Result, Status, Target
from anyprobe._alerts import AlertEngine, AlertRule
from anyprobe._maintenance import Maintenance, MaintenanceSettings, Selector
from anyprobe._model import RunSummary
from tests.memory_store import MemoryStore
from tests.servers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

#: Bound on the polls waiting for a notifier's task (a bound, not a timing assertion).
POLLS = 400
T0 = 1_800_000_000.0  # an arbitrary Unix time for the injected clock


def target(name: str, **labels: str) -> Target:
    return Target(
        name=name,
        url=f"tcp://127.0.0.1:9/{name}",
        display_url=f"tcp://127.0.0.1:9/{name}",
        probe="tcp",
        host="127.0.0.1",
        port=9,
        options=None,
        labels=labels,
    )


def result(name: str, status: Status, summary: str = "") -> Result:
    return Result(
        name=name,
        target=f"tcp://127.0.0.1:9/{name}",
        probe="tcp",
        status=status,
        summary=summary or f"{name} is {status.value}",
        started=dt.datetime.fromtimestamp(T0, dt.UTC),
        duration=0.01,
        attempts=1,
        phases={},
        metrics={},
        error=None,
        labels={},
    )


OK, WARNING, CRITICAL, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


class Recorder(anyprobe.Reporter[ReporterOptions]):
    """A reporter keeping what it gets: the notices the engine sends."""

    name = "recorder"
    Options = ReporterOptions

    def __init__(self) -> None:
        super().__init__(ReporterOptions())
        self.got: list[Result] = []

    async def report(self, results: anyprobe.ResultStream, ctx: ReportContext) -> None:
        async for item in results:
            self.got.append(item)

    def events(self) -> list[tuple[str, str]]:
        return [(r.details["alert"]["event"], r.name) for r in self.got]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rule(**settings: Any) -> AlertRule:
    settings.setdefault("notify", ((0, "recorder"),))
    return AlertRule(
        name=settings.pop("name", "pager"),
        selector=settings.pop("selector", Selector()),
        **settings,
    )


@asynccontextmanager
async def engine_running(
    rules: Sequence[AlertRule],
    targets: Sequence[Target],
    *,
    windows: Sequence[Maintenance] = (),
    connectivity: str | None = None,
    store: MemoryStore | None = None,
    clock: Callable[[], float] | None = None,
    reporters: Sequence[tuple[str, anyprobe.Reporter[Any]]] | None = None,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[AlertEngine]:
    engine = AlertEngine(clock=clock or Clock(), store=lambda: store, registry=registry)  # type: ignore[arg-type,return-value]
    engine.configure(rules, windows, targets, connectivity)
    engine.session(list(reporters or [("recorder", Recorder())]))
    async with anyio.create_task_group() as tg:
        await engine.start(tg, ReportContext(total=len(targets)))
        try:
            yield engine
        finally:
            engine.stop(RunSummary(total=0, counts={}, not_finished=0, duration=0.0))
            await engine.flush()


async def feed(
    engine: AlertEngine, name: str, *statuses: Status, clock: Clock | None = None
) -> None:
    for status in statuses:
        await engine.observe(target(name), result(name, status))
        if clock is not None:
            clock.now += 60
    await anyio.wait_all_tasks_blocked()


# -- thresholds ----------------------------------------------------------------------


async def test_three_failures_in_a_row_fire_and_two_do_not() -> None:
    recorder = Recorder()
    async with engine_running(
        [rule()], [target("db")], reporters=[("recorder", recorder)]
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL)
        assert recorder.events() == []
        await feed(engine, "db", OK, CRITICAL, CRITICAL)
        assert recorder.events() == [], "an ok result in between starts the count again"
        await feed(engine, "db", CRITICAL)
        assert recorder.events() == [("firing", "db")]
        await feed(engine, "db", CRITICAL, UNKNOWN, CRITICAL)
        assert recorder.events() == [("firing", "db")], "firing once, not at each failure"
        [firing] = engine.firing()
        assert (firing.alert, firing.check, firing.severity, firing.failures) == (
            "pager",
            "db",
            "critical",
            6,
        )
    notice = recorder.got[0].details["alert"]
    assert notice == {
        "alert": "pager",
        "check": "db",
        "event": "firing",
        "severity": "critical",
        "since": dt.datetime.fromtimestamp(T0, dt.UTC).isoformat(),
        "failures": 3,
    }
    assert recorder.got[0].status is CRITICAL
    assert recorder.got[0].summary == "db is critical"


async def test_success_threshold_resolves_after_two_ok_results() -> None:
    recorder = Recorder()
    async with engine_running(
        [rule()], [target("db")], reporters=[("recorder", recorder)]
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL, OK)
        assert recorder.events() == [("firing", "db")]
        await feed(engine, "db", CRITICAL, OK)
        assert recorder.events() == [("firing", "db")], "one ok, a failure, one ok: still firing"
        await feed(engine, "db", OK)
        assert recorder.events() == [("firing", "db"), ("resolved", "db")]
        assert engine.firing() == []
        await feed(engine, "db", OK, OK)
        assert len(recorder.got) == 2
    assert recorder.got[1].status is OK


async def test_warning_is_no_failure_unless_the_alert_says_on_warning() -> None:
    recorder = Recorder()
    rules = [rule(), rule(name="degraded", failing=frozenset({WARNING, CRITICAL, UNKNOWN}))]
    async with engine_running(rules, [target("api")], reporters=[("recorder", recorder)]) as engine:
        await feed(engine, "api", WARNING, WARNING, WARNING)
    assert [(r.details["alert"]["alert"], r.details["alert"]["event"]) for r in recorder.got] == [
        ("degraded", "firing")
    ]


async def test_send_resolved_false_resolves_without_a_notice() -> None:
    recorder = Recorder()
    async with engine_running(
        [rule(send_resolved=False)], [target("db")], reporters=[("recorder", recorder)]
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL, OK, OK)
        assert engine.firing() == []
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)
    assert recorder.events() == [("firing", "db"), ("firing", "db")]


async def test_an_alert_covers_the_checks_it_names_or_labels() -> None:
    recorder = Recorder()
    rules = [
        rule(name="by-name", selector=Selector(checks=("db",)), failure_threshold=1),
        rule(name="by-label", selector=Selector(labels={"team": "pay"}), failure_threshold=1),
    ]
    targets = [target("db"), target("api", team="pay"), target("web", team="web")]
    async with engine_running(rules, targets, reporters=[("recorder", recorder)]) as engine:
        for t in targets:
            await engine.observe(t, result(t.name, CRITICAL))
        await anyio.wait_all_tasks_blocked()
    assert sorted((r.details["alert"]["alert"], r.name) for r in recorder.got) == [
        ("by-label", "api"),
        ("by-name", "db"),
    ]


# -- reminders -----------------------------------------------------------------------


async def test_reminders_repeat_while_firing_and_stop_once_resolved() -> None:
    clock = Clock()
    recorder = Recorder()
    async with engine_running(
        [rule(reminder_every=3600.0)],
        [target("db")],
        clock=clock,
        reporters=[("recorder", recorder)],
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)  # fires at T0
        await engine.tick(T0 + 3599)
        await feed(engine, "db", CRITICAL)
        assert recorder.events() == [("firing", "db")]
        await engine.tick(T0 + 3600)
        await anyio.wait_all_tasks_blocked()
        assert recorder.events() == [("firing", "db"), ("reminder", "db")]
        await engine.tick(T0 + 3600 + 1800)
        await engine.tick(T0 + 7200)
        await anyio.wait_all_tasks_blocked()
        assert recorder.events()[-1] == ("reminder", "db") and len(recorder.got) == 3
        await feed(engine, "db", OK, OK)
        await engine.tick(T0 + 20000)
        await anyio.wait_all_tasks_blocked()
    assert recorder.events() == [
        ("firing", "db"),
        ("reminder", "db"),
        ("reminder", "db"),
        ("resolved", "db"),
    ]
    assert recorder.got[1].details["alert"]["since"] == recorder.got[0].details["alert"]["since"]


async def test_no_reminder_without_reminder_every() -> None:
    recorder = Recorder()
    async with engine_running(
        [rule()], [target("db")], reporters=[("recorder", recorder)]
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)
        await engine.tick(T0 + 10 * 86400)
        await anyio.wait_all_tasks_blocked()
    assert recorder.events() == [("firing", "db")]


# -- maintenance -----------------------------------------------------------------------


def daily_window(start: str, duration: str, **extra: Any) -> Maintenance:
    settings = MaintenanceSettings.model_validate(
        {"name": "backup", "start": start, "duration": duration, "repeat": "daily", **extra}
    )
    return Maintenance.from_settings(settings)


async def test_maintenance_silences_firing_and_reminders_then_fires_after_the_window() -> None:
    day = dt.datetime(2027, 3, 2, tzinfo=dt.UTC)
    clock = Clock()
    clock.now = (day + dt.timedelta(hours=2, minutes=10)).timestamp()  # inside 02:00-04:00
    recorder = Recorder()
    window = daily_window("02:00", "2h", checks=["db"])
    async with engine_running(
        [rule(reminder_every=600.0)],
        [target("db"), target("api")],
        windows=[window],
        clock=clock,
        reporters=[("recorder", recorder)],
    ) as engine:
        [active] = engine.active_maintenance(clock.now)
        assert (active.name, active.checks) == ("backup", ("db",))
        assert active.start == day + dt.timedelta(hours=2)
        assert active.end == day + dt.timedelta(hours=4)
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL, CRITICAL)
        await feed(engine, "api", CRITICAL, CRITICAL, CRITICAL)
        assert recorder.events() == [("firing", "api")], "db is in maintenance, api is not"
        await engine.tick((day + dt.timedelta(hours=3, minutes=59)).timestamp())
        await anyio.wait_all_tasks_blocked()
        assert [e for e in recorder.events() if e[1] == "db"] == []
        after = (day + dt.timedelta(hours=4)).timestamp()
        assert engine.active_maintenance(after) == []
        await engine.tick(after)
        await anyio.wait_all_tasks_blocked()
    assert [e for e in recorder.events() if e[1] == "db"] == [("firing", "db")]
    since = recorder.got[-1].details["alert"]["since"]
    assert since == (day + dt.timedelta(hours=2, minutes=10)).isoformat(), "its first failure"


async def test_a_check_that_recovers_during_maintenance_never_fires() -> None:
    clock = Clock()
    clock.now = dt.datetime(2027, 3, 2, 2, 30, tzinfo=dt.UTC).timestamp()
    recorder = Recorder()
    async with engine_running(
        [rule()],
        [target("db")],
        windows=[daily_window("02:00", "1h")],
        clock=clock,
        reporters=[("recorder", recorder)],
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL, OK, OK)
        await engine.tick(dt.datetime(2027, 3, 2, 3, 30, tzinfo=dt.UTC).timestamp())
        await anyio.wait_all_tasks_blocked()
    assert recorder.events() == []


async def test_ad_hoc_maintenance_opens_and_closes() -> None:
    clock = Clock()
    recorder = Recorder()
    async with engine_running(
        [rule()], [target("db"), target("api")], clock=clock, reporters=[("recorder", recorder)]
    ) as engine:
        window = engine.open_maintenance("deploy", 3600, Selector(checks=("db",)), "v2 rollout")
        assert window.id and window.checks == ("db",) and window.reason == "v2 rollout"
        assert [w.id for w in engine.active_maintenance(clock.now)] == [window.id]
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)
        assert recorder.events() == []
        assert engine.close_maintenance(window.id)
        assert not engine.close_maintenance(window.id)
        assert engine.active_maintenance(clock.now) == []
        await feed(engine, "db", CRITICAL)
    assert recorder.events() == [("firing", "db")]


def test_weekly_windows_follow_their_days_and_time_zone() -> None:
    settings = MaintenanceSettings.model_validate(
        {
            "name": "patch",
            "start": "23:30",
            "duration": "1h",
            "repeat": "weekly",
            "days": ["sun"],
            "timezone": "Europe/Paris",
        }
    )
    window = Maintenance.from_settings(settings)
    paris = dt.timezone(dt.timedelta(hours=1))  # CET in January
    sunday = dt.datetime(2027, 1, 3, 23, 45, tzinfo=paris)
    assert window.occurrence(sunday) is not None
    # Past midnight the Sunday window still lasts, on Monday.
    assert window.occurrence(dt.datetime(2027, 1, 4, 0, 15, tzinfo=paris)) is not None
    assert window.occurrence(dt.datetime(2027, 1, 4, 0, 31, tzinfo=paris)) is None
    assert window.occurrence(dt.datetime(2027, 1, 4, 23, 45, tzinfo=paris)) is None  # Monday
    start, end = window.occurrence(sunday)  # type: ignore[misc]
    assert start == dt.datetime(2027, 1, 3, 22, 30, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(hours=1)


# -- connectivity ------------------------------------------------------------------------


async def test_no_target_alert_while_the_connectivity_check_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    caplog.set_level("WARNING", logger="anyprobe.alerts")
    async with engine_running(
        [rule(selector=Selector(checks=("db",)))],
        [target("db"), target("uplink")],
        connectivity="uplink",
        reporters=[("recorder", recorder)],
    ) as engine:
        await feed(engine, "uplink", CRITICAL)
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)
        await feed(engine, "uplink", CRITICAL)
        await engine.tick()
        await anyio.wait_all_tasks_blocked()
        assert recorder.events() == []
        offline = [r.getMessage() for r in caplog.records if "offline" in r.getMessage()]
        assert len(offline) == 1 and "uplink" in offline[0]
        await feed(engine, "uplink", OK)
        await engine.tick()
        await anyio.wait_all_tasks_blocked()
    assert recorder.events() == [("firing", "db")], "still failing once online: it fires then"


# -- state through a store ----------------------------------------------------------------


async def test_a_restart_sends_no_duplicate_and_keeps_counting() -> None:
    store = MemoryStore()
    first, second = Recorder(), Recorder()
    targets = [target("db"), target("api")]
    async with engine_running(
        [rule()], targets, store=store, reporters=[("recorder", first)]
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)
        await feed(engine, "api", CRITICAL, CRITICAL)
    assert first.events() == [("firing", "db")]
    assert store.writes >= 1
    # A new process: a new engine reading the same store.
    async with engine_running(
        [rule()], targets, store=store, reporters=[("recorder", second)]
    ) as engine:
        assert [(f.check, f.failures) for f in engine.firing()] == [("db", 3)]
        await feed(engine, "db", CRITICAL)
        assert second.events() == [], "db was notified before the restart"
        await feed(engine, "api", CRITICAL)
        assert second.events() == [("firing", "api")], "api's two failures were kept"
        await feed(engine, "db", OK, OK)
    assert second.events() == [("firing", "api"), ("resolved", "db")]


async def test_without_a_store_the_state_lives_in_the_engine() -> None:
    recorder = Recorder()
    engine = AlertEngine(clock=Clock())
    engine.configure([rule()], [], [target("db")])
    for _ in range(3):
        await engine.observe(target("db"), result("db", CRITICAL))
    # No config run yet (between two, on reload): nothing sent, it stays due.
    assert engine.firing() == []
    engine.session([("recorder", recorder)])
    async with anyio.create_task_group() as tg:
        await engine.start(tg, ReportContext(total=1))
        await engine.observe(target("db"), result("db", CRITICAL))
        await anyio.wait_all_tasks_blocked()
        engine.stop(RunSummary(total=0, counts={}, not_finished=0, duration=0.0))
    assert recorder.events() == [("firing", "db")]


# -- notifiers that fail --------------------------------------------------------------------


async def test_a_failing_notifier_is_retried_counted_and_never_blocks(
    manager: PluginManager, webhook_receiver: WebhookReceiver
) -> None:
    from anyprobe._config import make_reporter

    webhook_receiver.default_status = 503
    webhook_receiver.error_headers = {"Retry-After": "0"}
    _, hook = make_reporter(
        manager,
        "webhook",
        {"url": webhook_receiver.url, "mode": "per_result", "retries": 2, "backoff": 0},
    )
    registry = CollectorRegistry()
    clock = Clock()
    async with engine_running(
        [rule(notify=((0, "hook"),), reminder_every=60.0)],
        [target("db")],
        reporters=[("hook", hook)],
        registry=registry,
        clock=clock,
    ) as engine:
        await feed(engine, "db", CRITICAL, CRITICAL, CRITICAL)  # returns at once
        failed = "anyprobe_notifications_failed_total"
        for _ in range(POLLS):
            if registry.get_sample_value(failed, {"notifier": "hook"}):
                break
            await anyio.sleep(0.01)
        assert registry.get_sample_value(failed, {"notifier": "hook"}) == 1
        assert len(webhook_receiver.requests) == 3, "the first POST and two retries"
        assert engine.notifier_failures() == {"hook": "HTTP 503 Service Unavailable"}
        # The receiver is back: the next notice gets through and clears the failure.
        webhook_receiver.default_status = 200
        await engine.tick(T0 + 60)
        sent = "anyprobe_notifications_total"
        for _ in range(POLLS):
            if registry.get_sample_value(sent, {"notifier": "hook"}):
                break
            await anyio.sleep(0.01)
        assert registry.get_sample_value(sent, {"notifier": "hook"}) == 1
        assert engine.notifier_failures() == {}
    body = webhook_receiver.bodies()[-1]
    assert body["name"] == "db" and body["status"] == "critical"
    assert body["details"]["alert"]["event"] == "reminder"


# -- config ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "serve.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


CHECKS = """\
[[check]]
name = "db"
url = "tcp://127.0.0.1:9"
labels = { team = "core" }

[[reporter]]
type = "webhook"
name = "oncall"
url = "http://127.0.0.1:9/hook"
mode = "on_change"

[[reporter]]
type = "jsonl"
path = "changes.jsonl"
"""


def test_alert_tables_load(manager: PluginManager, tmp_path: Path) -> None:
    from anyprobe._serve import load_serve_config

    config = load_serve_config(
        write(
            tmp_path,
            CHECKS
            + '[[alert]]\nname = "page"\nlabels = { team = "core" }\nreminder_every = "1h30m"\n'
            'severity = "warning"\non = "warning"\nnotify = ["oncall"]\n\n'
            "[[alert]]\nfailure_threshold = 5\n\n"
            '[[maintenance]]\nname = "backup"\nstart = "02:00"\nduration = "2h"\n'
            'repeat = "weekly"\ndays = ["sat", "sun"]\ntimezone = "Europe/Paris"\n\n'
            '[serve]\nconnectivity = "db"\n',
        ),
        manager,
    )
    assert config.serve is not None
    first, second = config.serve.alerts
    assert (first.name, first.reminder_every, first.severity, first.notify) == (
        "page",
        5400.0,
        "warning",
        ((0, "oncall"),),
    )
    assert WARNING in first.failing
    assert (second.name, second.failure_threshold, second.notify) == (
        "alert-2",
        5,
        ((0, "oncall"),),
    ), "by default every notifier (jsonl is none)"
    [window] = config.serve.maintenance
    assert window.duration == 7200 and window.days == frozenset({5, 6})
    assert config.serve.settings.connectivity == "db"


@pytest.mark.parametrize(
    ("tables", "fragments"),
    [
        ('[[alert]]\nchecks = ["dbb"]\n', [":16:", "checks", "'dbb'", "did you mean 'db'"]),
        ('[[alert]]\nnotify = ["pager"]\n', [":16:", "notify", "'pager'"]),
        ('[[alert]]\nreminder_every = "soon"\n', [":16:", "reminder_every", "'soon'"]),
        ("[[alert]]\nfailure_threshold = 0\n", [":16:", "failure_threshold"]),
        ("[[alert]]\nseverity = 'high'\nfoo = 1\n", [":17:", "foo", "unknown"]),
        ('[[maintenance]]\nname = "m"\nstart = "25:00"\nduration = "1h"\n', ["start"]),
        (
            '[[maintenance]]\nname = "m"\nstart = "02:00"\nduration = "1h"\nrepeat = "daily"\n'
            'timezone = "Mars/Olympus"\n',
            [":20:", "timezone", "Mars/Olympus"],
        ),
        ('[[maintenance]]\nname = "m"\nstart = "02:00"\nduration = "1h"\n', ["repeat"]),
        ('[serve]\nconnectivity = "uplink"\n', [":16:", "connectivity", "'uplink'"]),
    ],
)
def test_bad_alert_tables_are_one_clear_error(
    manager: PluginManager, tmp_path: Path, tables: str, fragments: list[str]
) -> None:
    from anyprobe._serve import load_serve_config

    path = write(tmp_path, CHECKS + tables)
    with pytest.raises(anyprobe.ConfigError) as info:
        load_serve_config(path, manager)
    message = str(info.value)
    assert "\n" not in message and path in message
    for fragment in fragments:
        assert fragment in message, message
