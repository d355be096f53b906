"""Results of every kind, and a way to feed them to one reporter, for reporter tests.

The samples cover each status, an error with its phase, phases, metrics,
labels whose names Prometheus would refuse, and names and summaries with the
characters each format must escape (quotes, pipes, ``=``, ``<&>``, a control
character, a newline).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from anyprobe import ErrorInfo, ReportContext, Reporter, Result, ResultStream, RunSummary, Status

START = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)


def make_result(
    name: str = "api",
    *,
    status: Status = Status.OK,
    summary: str = "HTTP 200 in 41 ms",
    target: str | None = None,
    probe: str = "tcp",
    duration: float = 0.041,
    attempts: int = 1,
    phases: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    labels: dict[str, str] | None = None,
    offset: float = 0.0,
    thresholds: dict[str, float] | None = None,
) -> Result:
    """A result as core would build it, with sensible defaults."""
    return Result(
        name=name,
        target=target or f"tcp://127.0.0.1:9/{name}",
        probe=probe,
        status=status,
        summary=summary,
        started=START + timedelta(seconds=offset),
        duration=duration,
        attempts=attempts,
        phases=phases if phases is not None else {"resolve": 0.001, "connect": 0.002},
        metrics=metrics if metrics is not None else {},
        error=error,
        labels=labels if labels is not None else {},
        thresholds=thresholds if thresholds is not None else {},
    )


def sample_results() -> list[Result]:
    """Five results: ok, warning, critical, unknown and a critical timeout."""
    return [
        make_result(
            "api",
            probe="http",
            target="https://api.example.test/health",
            summary="HTTP 200 in 41 ms",
            phases={
                "resolve": 0.002,
                "connect": 0.011,
                "tls": 0.018,
                "first_byte": 0.009,
                "transfer": 0.001,
            },
            metrics={"http_status": 200, "cert_expiry_days": 61.5, "body_bytes": 512},
            labels={"team": "payments", "env-name": "prod", "name": "shadowed"},
        ),
        make_result(
            "db primary",
            status=Status.WARNING,
            target="tcp://db.example.test:5432",
            summary="connected in 812.0 ms, more than warning_after 0.5 s",
            duration=0.812,
            labels={"team": "storage"},
            offset=0.1,
        ),
        make_result(
            "cache",
            status=Status.CRITICAL,
            target="tcp://cache.example.test:6379",
            summary="connection refused by 127.0.0.1:6379",
            duration=0.003,
            error=ErrorInfo("ConnectionRefusedError", "[Errno 111] Connection refused", "connect"),
            offset=0.2,
        ),
        make_result(
            "odd 'name' | a=b <&>",
            status=Status.UNKNOWN,
            probe="custom",
            target="custom://odd.example.test",
            summary="probe raised ValueError: bad \x00 byte | 50% <done> & more\nsecond line",
            duration=0.0005,
            error=ErrorInfo("ValueError", "bad \x00 byte"),
            metrics={"ratio": 0.5, "flag": True, "note": "text"},
            offset=0.3,
        ),
        make_result(
            "dns",
            status=Status.CRITICAL,
            probe="dns",
            target="dns://127.0.0.1/example.test?type=A",
            summary="timed out after 2 s during request",
            duration=2.0,
            phases={"resolve": 0.0001, "request": 1.9999},
            error=ErrorInfo("TimeoutError", "timed out after 2 s", "request"),
            offset=0.4,
        ),
    ]


def summarize(results: Sequence[Result], **kwargs: Any) -> RunSummary:
    """The summary core would give a run that produced ``results``."""
    counts = Counter(result.status for result in results)
    fields: dict[str, Any] = {
        "total": len(results),
        "counts": dict(counts),
        "not_finished": 0,
        "duration": 2.5,
    }
    fields.update(kwargs)
    return RunSummary(**fields)


async def run_reporter(
    reporter: Reporter[Any],
    results: Sequence[Result],
    summary: RunSummary | None = None,
    *,
    buffer: int = 100,
    color: bool | None = None,
) -> None:
    """Feed ``results`` to ``reporter`` as core does; its exception propagates as it is."""
    send, receive = anyio.create_memory_object_stream[Result](buffer)
    ctx = ReportContext(total=len(results), color=color)

    async def feed() -> None:
        async with send:
            for result in results:
                try:
                    await send.send(result)
                except anyio.BrokenResourceError:
                    return  # the reporter stopped reading (it failed)
            ctx.summary = summary if summary is not None else summarize(results)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            async with receive:
                await reporter.report(ResultStream(receive), ctx)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise


async def cancel_mid_run(reporter: Reporter[Any], results: Sequence[Result]) -> None:
    """Give ``results`` to ``reporter``, then cancel it while its stream is still open."""
    send, receive = anyio.create_memory_object_stream[Result](len(results) + 1)

    async def consume() -> None:
        async with receive:
            await reporter.report(ResultStream(receive), ReportContext(total=len(results) + 1))

    async with anyio.create_task_group() as tg, send:
        tg.start_soon(consume)
        for result in results:
            await send.send(result)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
