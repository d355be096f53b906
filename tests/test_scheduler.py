"""The scheduler: limits, timeouts, retries; a probe's failure is a result, never a crash."""

from __future__ import annotations

import pytest

import anyprobe
from anyprobe import PluginManager, Status
from tests import probes

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    probes.ScriptedProbe.attempts.clear()
    probes.ScriptedProbe.running = probes.ScriptedProbe.most_running = 0
    return manager


async def run(
    manager: PluginManager, targets: list[str], **kwargs: object
) -> dict[str, anyprobe.Result]:
    results = await anyprobe.check(targets, manager=manager, **kwargs)  # type: ignore[arg-type]
    assert len(results) == len(targets)
    return {r.target: r for r in results}


async def test_exception_in_probe_is_unknown_with_type_message_and_phase(
    scripted: PluginManager,
) -> None:
    result = (await run(scripted, ["test://raise"]))["test://raise"]
    assert result.status is Status.UNKNOWN
    assert result.error == anyprobe.ErrorInfo("ValueError", "bad reply", "parse")
    assert "ValueError: bad reply" in result.summary


async def test_hanging_probe_times_out_critical_naming_the_phase(scripted: PluginManager) -> None:
    result = (await run(scripted, ["test://hang"], timeout=0.2))["test://hang"]
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.2 s during connect"
    assert result.error is not None and result.error.type == "TimeoutError"
    assert result.error.phase == "connect"


async def test_one_bad_target_never_cancels_the_others(scripted: PluginManager) -> None:
    results = await run(
        scripted, ["test://raise", "test://hang", "test://ok", "test://fail"], timeout=0.2
    )
    assert {t: r.status for t, r in results.items()} == {
        "test://raise": Status.UNKNOWN,
        "test://hang": Status.CRITICAL,
        "test://ok": Status.OK,
        "test://fail": Status.CRITICAL,
    }
    assert results["test://fail"].summary == "connection refused"
    assert results["test://fail"].error.type == "ConnectionRefusedError"  # type: ignore[union-attr]


async def test_probe_returning_no_outcome_is_unknown(scripted: PluginManager) -> None:
    result = (await run(scripted, ["test://none"]))["test://none"]
    assert result.status is Status.UNKNOWN


async def test_retry_that_passes_says_so(scripted: PluginManager) -> None:
    result = (await run(scripted, ["test://flaky"], retries=2))["test://flaky"]
    assert result.status is Status.OK
    assert result.attempts == 2
    assert "on attempt 2; attempt 1: first attempt fails" in result.summary


async def test_retries_exhausted_reports_every_attempt(scripted: PluginManager) -> None:
    result = (await run(scripted, ["test://fail"], retries=2))["test://fail"]
    assert (result.status, result.attempts) == (Status.CRITICAL, 3)
    assert "all 3 attempts failed" in result.summary
    assert probes.ScriptedProbe.attempts["test://fail"] == 3


async def test_no_retry_without_retries(scripted: PluginManager) -> None:
    result = (await run(scripted, ["test://fail"]))["test://fail"]
    assert result.attempts == 1


async def test_latency_thresholds_make_warning_and_critical(scripted: PluginManager) -> None:
    results = await run(
        scripted,
        ["test://slow-a"],
        options={"sleep": 0.05, "warning_after": 0.01},
    )
    assert results["test://slow-a"].status is Status.WARNING
    assert "over warning_after 0.01 s" in results["test://slow-a"].summary
    results = await run(
        scripted,
        ["test://slow-b"],
        options={"sleep": 0.05, "warning_after": 0.01, "critical_after": 0.02},
    )
    assert results["test://slow-b"].status is Status.CRITICAL
    # The result says which thresholds it was held to (the nagios reporter prints them).
    thresholds = {"warning_after": 0.01, "critical_after": 0.02}
    assert results["test://slow-b"].thresholds == thresholds
    assert results["test://slow-b"].as_dict()["thresholds"] == thresholds
    assert "thresholds" not in (await run(scripted, ["test://ok"]))["test://ok"].as_dict()


async def test_concurrency_is_bounded(scripted: PluginManager) -> None:
    targets = [f"test://slow-{i}" for i in range(40)]
    await run(scripted, targets, options={"sleep": 0.01}, concurrency=5)
    assert 1 < probes.ScriptedProbe.most_running <= 5


async def test_per_host_limit_is_respected(scripted: PluginManager) -> None:
    targets = [f"test://slow-same/{i}" for i in range(20)]
    await run(scripted, targets, options={"sleep": 0.01}, concurrency=10, per_host=2)
    assert probes.ScriptedProbe.most_running == 2


async def test_shared_limiter_bounds_two_concurrent_runs(scripted: PluginManager) -> None:
    import anyio

    limiter = anyio.CapacityLimiter(3)
    async with anyio.create_task_group() as tg:
        for run_number in range(2):
            targets = [f"test://slow-{run_number}-{i}" for i in range(15)]
            tg.start_soon(
                lambda t=targets: run(scripted, t, options={"sleep": 0.01}, limiter=limiter)
            )
    assert probes.ScriptedProbe.most_running == 3


async def test_result_has_phases_metrics_trace_and_labels(scripted: PluginManager) -> None:
    results = await run(scripted, ["test://ok"], explain=True, labels={"team": "core"})
    result = results["test://ok"]
    assert result.metrics == {"answer": 42}
    assert result.labels == {"team": "core"}
    assert [e.message for e in result.trace] == ["did the thing"]
    assert result.started.tzinfo is not None


async def test_cancellation_from_outside_propagates(scripted: PluginManager) -> None:
    import anyio

    with anyio.move_on_after(0.2) as scope:
        await anyprobe.check(["test://hang", "test://ok"], manager=scripted, timeout=30)
    assert scope.cancelled_caught


async def test_probe_blocking_the_loop_is_named_and_late_is_critical(
    scripted: PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    results = await run(scripted, ["block://12", "test://ok"], timeout=0.5, watchdog=True)
    blocked = results["block://12"]
    assert blocked.status is Status.CRITICAL
    assert "over the 0.5 s timeout, without yielding to the event loop" in blocked.summary
    assert results["test://ok"].status is Status.OK
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "check block://12 (probe blocking) has blocked the event loop" in w and "probes.py" in w
        for w in warnings
    ), warnings


class _EveryFieldProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """A check whose result has something of its own in every field."""

    name = "every-field"
    schemes = ("every",)

    def validate_url(self, url: object, text: str) -> tuple[str, int | None]:
        return "every-host", None

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        with ctx.phase("connect"):
            ctx.metrics["from_context"] = 1
        ctx.trace("a line of the trace")
        return anyprobe.Outcome.warning(
            "a summary",
            metrics={"from_outcome": 2},
            details={"detail": 3},
            error=anyprobe.ErrorInfo("Odd", "an odd thing", "connect"),
        )


class _EveryFieldPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: object) -> None:
        register(_EveryFieldProbe)  # type: ignore[operator]


async def test_result_carries_each_part_of_the_check_in_its_own_field(
    manager: PluginManager,
) -> None:
    manager.register(_EveryFieldPlugin())
    check = anyprobe.Check(
        "every://x",
        name="the name",
        options={"warning_after": 30},
        labels={"team": "t"},
        timeout=7,
    )
    [result] = await anyprobe.check([check], manager=manager, explain=True)
    assert (result.name, result.target, result.probe) == ("the name", "every://x", "every-field")
    assert (result.status, result.summary, result.attempts) == (Status.WARNING, "a summary", 1)
    assert result.started.tzinfo is not None and 0 <= result.duration < 7
    assert list(result.phases) == ["connect"]
    assert result.metrics == {"from_context": 1, "from_outcome": 2}
    assert result.error == anyprobe.ErrorInfo("Odd", "an odd thing", "connect")
    assert result.labels == {"team": "t"}
    assert result.details == {"detail": 3}
    assert [event.message for event in result.trace] == ["a line of the trace"]
    assert result.thresholds == {"warning_after": 30}
    assert result.attempt_log == ()
