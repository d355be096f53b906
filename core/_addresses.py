"""Checking every address a name resolves to: the ``addresses`` option.

With ``addresses = "all"`` or ``"any"`` (:class:`~anyprobe.AddressOptions`)
core resolves the target's host once (phase ``resolve``, the check's
``ip_family``, the address policy applied to each address on its own), then
runs the probe's ``check`` once per address, concurrently (at most
:data:`MAX_CONCURRENT_ADDRESSES` at once), each pinned to its address: inside
that sub-check, ``ctx.resolve``, ``ctx.connect`` and ``ctx.connect_socket``
for the target's host give only that address. Every sub-check shares the
check's one deadline; each stops just before it, so that a slow address is
named as timed out instead of the whole check. One combiner turns the
per-address outcomes into the check's outcome (:func:`combine`): the worst
for ``all``, the best for ``any``, and a summary naming each address that
failed and why: ``2 of 3 addresses failed: 127.0.0.2: connection refused;
::1: timed out after 5 s during connect``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._model import ErrorInfo, Outcome, Status, TraceEvent

if TYPE_CHECKING:
    from ._model import Target
    from ._probe import CheckContext, Probe
    from .net import IpFamily

AddressMode = Literal["first", "all", "any"]

#: Addresses of one check checked at the same time (each holds a socket).
MAX_CONCURRENT_ADDRESSES = 8
#: Most seconds kept, before the check's deadline, to combine the verdicts
#: (a tenth of the timeout when that is less).
MAX_MARGIN = 0.25


@dataclass(slots=True)
class AddressCheck:
    """How the check of one address ended (an entry of ``details["addresses"]``)."""

    address: str
    outcome: Outcome
    duration: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    trace: list[TraceEvent] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return self.outcome.status

    def as_dict(self) -> dict[str, Any]:
        error = self.outcome.error
        return {
            "address": self.address,
            "status": self.status.value,
            "summary": self.outcome.summary,
            "duration": self.duration,
            "phases": dict(self.phases),
            "metrics": dict(self.metrics),
            "error": error.as_dict() if error else None,
        }


async def check_every_address(
    probe: Probe[Any], target: Target, ctx: CheckContext, mode: AddressMode
) -> Outcome:
    """Run ``probe``'s check of ``target`` once per address of its host; the
    combined outcome (phases, metrics and trace are left in ``ctx``)."""
    from .net import _lookup

    options = target.options
    ip_family: IpFamily = getattr(options, "ip_family", "any")
    with ctx.phase("resolve"):
        addresses = await _lookup(target.host, target.port or 0, ip_family)
    if ctx.explain:
        ctx.trace(
            f"resolved {target.host} to {', '.join(addresses)}; "
            f"checking {'each' if len(addresses) > 1 else 'the'} address (addresses = {mode!r})"
        )
    checks = [AddressCheck(address, _not_checked()) for address in addresses]
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_ADDRESSES)
    async with anyio.create_task_group() as tg:
        for entry in checks:
            tg.start_soon(_check_one, probe, target, ctx, entry, limiter)
    for entry in checks:
        for event in entry.trace:
            ctx.trace_events.append(TraceEvent(event.at, f"[{entry.address}] {event.message}"))
        ctx.trace(f"[{entry.address}] {entry.status.value}: {entry.outcome.summary}")
    outcome = combine(mode, checks)
    deciding = _deciding(mode, checks)
    for name, seconds in deciding.phases.items():
        if name != "resolve":
            ctx.phases[name] = seconds
    ctx.metrics.update(deciding.metrics)
    return outcome


def _not_checked() -> Outcome:
    return Outcome(Status.UNKNOWN, "not checked")


async def _check_one(
    probe: Probe[Any],
    target: Target,
    parent: CheckContext,
    entry: AddressCheck,
    limiter: anyio.CapacityLimiter,
) -> None:
    """The check of one address, pinned to it, its outcome set on ``entry``."""
    from ._outcomes import apply_thresholds, outcome_of
    from ._probe import CheckContext
    from .net import check_destination

    # Each address's check ends a little before the check's deadline: the
    # time left is for combining the verdicts, so that an address that never
    # answers is named as timed out, not the whole check (a loaded machine
    # wakes timers late). The probe's own deadline logic (ctx.remaining(),
    # Connection.expect) works to this earlier deadline.
    deadline = parent.deadline - min(MAX_MARGIN, parent.timeout / 10)
    ctx = CheckContext(
        timeout=parent.timeout,
        deadline=deadline,
        attempt=parent.attempt,
        explain=parent.explain,
        resources=parent._resources,
        masker=parent.masker,
    )
    ctx._started = parent._started
    ctx.pinned = (target.host, entry.address)
    start = time.perf_counter()
    outcome = entry.outcome
    with anyio.CancelScope(deadline=deadline) as scope:
        async with limiter:
            start = time.perf_counter()

            async def check() -> Outcome:
                # The policy decides on each address alone: one refused
                # address fails its own check, not the others'.
                check_destination(target.host, [entry.address])
                return await probe.check(target, target.options, ctx)

            outcome = await outcome_of(probe, ctx, check)
    entry.duration = time.perf_counter() - start
    if scope.cancelled_caught:
        phase = ctx.current_phase
        where = f" during {phase}" if phase else ""
        message = f"timed out after {parent.timeout:g} s{where}"
        outcome = Outcome(Status.CRITICAL, message, error=ErrorInfo("TimeoutError", message, phase))
    elif not isinstance(outcome, Outcome):
        error = ErrorInfo("TypeError", f"check() returned {type(outcome).__name__}")
        outcome = Outcome(Status.UNKNOWN, f"probe {probe.name} returned no Outcome", error=error)
    else:
        outcome = apply_thresholds(outcome, target.options, entry.duration)
    entry.outcome = outcome
    entry.phases = ctx.phases
    entry.metrics = {**ctx.metrics, **outcome.metrics}
    entry.trace = ctx.trace_events


def _deciding(mode: AddressMode, checks: list[AddressCheck]) -> AddressCheck:
    """The address whose outcome gives the check its status, error, phases
    and metrics: the first of the worst (``all``) or of the best (``any``)."""
    if mode == "any":
        return min(checks, key=lambda entry: entry.status.severity)
    return max(checks, key=lambda entry: entry.status.severity)


def _count(number: int) -> str:
    return f"{number} address" if number == 1 else f"{number} addresses"


def combine(mode: AddressMode, checks: list[AddressCheck]) -> Outcome:
    """One outcome for the checks of every address (in the resolver's order).

    - ``all``: the worst status. ``all 3 addresses ok: 127.0.0.1, 127.0.0.2,
      ::1 (HTTP 200 in 3 ms)``, or ``2 of 3 addresses failed: 127.0.0.2:
      connection refused; ::1: timed out after 5 s during connect``.
    - ``any``: the best status (ok when one address passes, the failures
      listed): ``1 of 3 addresses ok (127.0.0.1: HTTP 200 in 3 ms); 2 failed:
      127.0.0.2: connection refused; ::1: ...``; when none passes, as ``all``.

    An address whose check ended in a warning is listed as ``ADDRESS:
    warning: SUMMARY``. The outcome's metrics are the deciding address's
    (:func:`_deciding`) plus ``addresses_checked`` and ``addresses_failed``
    (not ok); its details the deciding address's plus ``addresses``, one
    entry per address.
    """
    deciding = _deciding(mode, checks)
    total = len(checks)
    not_ok = [entry for entry in checks if entry.status is not Status.OK]
    passed = [entry for entry in checks if entry.status <= Status.WARNING]
    metrics = {
        **deciding.outcome.metrics,
        "addresses_checked": total,
        "addresses_failed": len(not_ok),
    }
    details = {**deciding.outcome.details, "addresses": [entry.as_dict() for entry in checks]}
    status = deciding.status
    if total == 1:
        summary = deciding.outcome.summary
    elif not not_ok:
        shown = ", ".join(entry.address for entry in checks)
        summary = f"all {_count(total)} ok: {shown} ({deciding.outcome.summary})"
    elif mode == "any" and passed:
        ok = [entry for entry in passed if entry.status is Status.OK] or passed
        others = [entry for entry in checks if entry not in ok]
        shown = "; ".join(_item(entry) for entry in ok)
        summary = f"{len(ok)} of {_count(total)} ok ({shown}); {_listed(others, str(len(others)))}"
    else:
        summary = _listed(not_ok, f"{len(not_ok)} of {_count(total)}")
    return Outcome(status, summary, metrics=metrics, details=details, error=deciding.outcome.error)


def _listed(entries: list[AddressCheck], head: str) -> str:
    """``2 of 3 addresses failed: A: why; B: why`` (``not ok`` when one only warned)."""
    word = "failed" if all(entry.status > Status.WARNING for entry in entries) else "not ok"
    return f"{head} {word}: {'; '.join(_item(entry) for entry in entries)}"


def _item(entry: AddressCheck) -> str:
    """``127.0.0.2: connection refused``, ``::1: warning: took 0.3 s ...``."""
    status = "" if entry.status in (Status.OK, Status.CRITICAL) else f"{entry.status.value}: "
    return f"{entry.address}: {status}{entry.outcome.summary}"
