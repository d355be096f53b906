"""How what a probe's check did becomes an :class:`~anyprobe.Outcome`: an
exception it raised, the latency thresholds it is held to. Shared by the
scheduler and by the check of every address (``_addresses``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import CheckFailed
from ._model import ErrorInfo, Outcome, Status

if TYPE_CHECKING:
    from ._probe import CheckContext, Probe


def raised(probe: Probe[Any], exc: BaseException, ctx: CheckContext) -> Outcome:
    """The ``unknown`` outcome of a probe that raised ``exc``."""
    error = ErrorInfo.from_exception(exc, ctx.current_phase)
    return Outcome(
        Status.UNKNOWN, f"probe {probe.name} raised {error.type}: {error.message}", error=error
    )


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is (or carries) the cancellation of a cancel scope."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(cancelled) is not None
    return isinstance(exc, cancelled)


async def outcome_of(
    probe: Probe[Any], ctx: CheckContext, call: Callable[[], Awaitable[Outcome]]
) -> Outcome:
    """What ``await call()`` (a probe's check) comes to: its outcome, a
    CheckFailed's, or ``unknown`` for any other exception, a BaseException from
    a plugin (SystemExit, KeyboardInterrupt) included. Only a cancellation goes
    on: it is anyprobe's own (a deadline, the run stopping)."""
    try:
        return await call()
    except CheckFailed as failed:
        return failed.to_outcome(ctx.current_phase)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        return raised(probe, exc, ctx)
    except BaseException as exc:
        if is_cancellation(exc):
            raise
        return raised(probe, exc, ctx)


def apply_thresholds(outcome: Outcome, options: Any, elapsed: float) -> Outcome:
    """Make a passing outcome a warning or critical when it took too long."""
    if outcome.status is not Status.OK and outcome.status is not Status.WARNING:
        return outcome
    critical_after = getattr(options, "critical_after", None)
    warning_after = getattr(options, "warning_after", None)
    if critical_after is not None and elapsed > critical_after:
        status, limit, name = Status.CRITICAL, critical_after, "critical_after"
    elif warning_after is not None and elapsed > warning_after and outcome.status is Status.OK:
        status, limit, name = Status.WARNING, warning_after, "warning_after"
    else:
        return outcome
    outcome.status = status
    outcome.summary += f" (took {elapsed:.3f} s, over {name} {limit:g} s)"
    return outcome
