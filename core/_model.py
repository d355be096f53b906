"""The data model every part of anyprobe shares: statuses, targets, outcomes and results.

Results are plain frozen dataclasses with slots: one is built per check, so they
stay cheap. Validation (pydantic) happens at the edges, before a run starts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._defaults import DEFAULT_TIMEOUT


class Status(enum.Enum):
    """The verdict of one check, in the monitoring-plugins convention.

    Statuses are ordered by severity (``ok < warning < critical < unknown``) and
    the severity is also the exit status a Nagios-style plugin would use.
    """

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> int:
        """0 for ok, 1 for warning, 2 for critical, 3 for unknown."""
        return _SEVERITY[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _SEVERITY[self] < _SEVERITY[other]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _SEVERITY[self] <= _SEVERITY[other]

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _SEVERITY[self] > _SEVERITY[other]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _SEVERITY[self] >= _SEVERITY[other]

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        """The most severe of ``statuses``; ``ok`` when there are none."""
        return max(statuses, key=_SEVERITY.__getitem__, default=cls.OK)


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong in a failed check.

    ``type`` is the exception's class name (``ConnectError``, ``TimeoutError``),
    ``phase`` the phase it happened in (``connect``, ``tls``...) or None.
    """

    type: str
    message: str
    phase: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, phase: str | None = None) -> ErrorInfo:
        """Describe ``exc``; the message falls back to the class name when empty."""
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, phase)

    def as_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "message": self.message, "phase": self.phase}


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of a check's ``--explain`` trace: seconds since the attempt started."""

    at: float
    message: str


@dataclass(frozen=True, slots=True)
class Target:
    """One check to run: validated, ready for the scheduler.

    ``url`` is the URL as given (it may carry credentials: never print it);
    ``display_url`` is the same URL with any password replaced by ``***``.
    ``options`` is an instance of the probe's ``Options`` model.
    """

    name: str
    url: str
    display_url: str
    probe: str
    host: str
    port: int | None
    options: Any
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0


@dataclass(slots=True)
class Outcome:
    """What a probe's ``check`` returns; core turns it into a :class:`Result`.

    ``metrics`` holds numbers and short strings a reporter may export
    (``http_status``, ``cert_expiry_days``); ``details`` holds structured data
    that is only worth reading (a certificate chain, the DNS answers).

    >>> Outcome.ok("connected", metrics={"port": 22})
    Outcome(status=<Status.OK: 'ok'>, summary='connected', ...)
    """

    status: Status
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None

    @classmethod
    def ok(cls, summary: str, **kwargs: Any) -> Outcome:
        return cls(Status.OK, summary, **kwargs)

    @classmethod
    def warning(cls, summary: str, **kwargs: Any) -> Outcome:
        return cls(Status.WARNING, summary, **kwargs)

    @classmethod
    def critical(cls, summary: str, **kwargs: Any) -> Outcome:
        return cls(Status.CRITICAL, summary, **kwargs)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a check, as it ended: kept in :attr:`Result.attempt_log`.

    ``duration`` is this attempt alone (the backoff before the next one is
    not in it); ``trace`` is its ``--explain`` trace, empty when that is off.
    """

    status: Status
    summary: str
    error: ErrorInfo | None
    started: datetime
    duration: float
    phases: Mapping[str, float]
    trace: tuple[TraceEvent, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The attempt's entry in the JSON Lines ``attempt_log`` list."""
        record: dict[str, Any] = {
            "status": self.status.value,
            "summary": self.summary,
            "error": self.error.as_dict() if self.error else None,
            "started": self.started.isoformat(),
            "duration": self.duration,
            "phases": dict(self.phases),
        }
        if self.trace:
            record["trace"] = [{"at": e.at, "message": e.message} for e in self.trace]
        return record


@dataclass(frozen=True, slots=True)
class Result:
    """The result of one check, as every reporter receives it.

    Its fields are the JSON Lines contract (see :meth:`as_dict`); ``thresholds``,
    ``details``, ``trace`` and ``attempt_log`` are only written when they hold
    something.

    ``duration`` is the whole check: from the start of its first attempt to
    its verdict, every retry and the backoff between them included.
    ``attempts`` counts the attempts; ``attempt_log`` holds every one of them,
    in order, when there was more than one (the last is the one whose status
    the result carries). A check decided by its first attempt has an empty
    ``attempt_log``: the result itself is that attempt, and
    :meth:`every_attempt` gives it as one.
    """

    name: str
    target: str
    probe: str
    status: Status
    summary: str
    started: datetime
    duration: float
    attempts: int
    phases: Mapping[str, float]
    metrics: Mapping[str, Any]
    error: ErrorInfo | None
    labels: Mapping[str, str]
    details: Mapping[str, Any] = field(default_factory=dict)
    trace: tuple[TraceEvent, ...] = ()
    #: The latency thresholds the check was held to (``warning_after``,
    #: ``critical_after``, seconds), for reporters that print them.
    thresholds: Mapping[str, float] = field(default_factory=dict)
    #: Every attempt, in order, when the check made more than one.
    attempt_log: tuple[Attempt, ...] = ()

    def every_attempt(self) -> tuple[Attempt, ...]:
        """Every attempt of the check, the only one included (built from the result)."""
        if self.attempt_log:
            return self.attempt_log
        only = Attempt(
            self.status, self.summary, self.error, self.started, self.duration, self.phases,
            self.trace,
        )  # fmt: skip
        return (only,)

    def as_dict(self) -> dict[str, Any]:
        """The JSON Lines record: keys may be added over time, never renamed."""
        record: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "probe": self.probe,
            "status": self.status.value,
            "summary": self.summary,
            "started": self.started.isoformat(),
            "duration": self.duration,
            "attempts": self.attempts,
            "phases": dict(self.phases),
            "metrics": dict(self.metrics),
            "error": self.error.as_dict() if self.error else None,
            "labels": dict(self.labels),
        }
        if self.thresholds:
            record["thresholds"] = dict(self.thresholds)
        if self.details:
            record["details"] = dict(self.details)
        if self.trace:
            record["trace"] = [{"at": e.at, "message": e.message} for e in self.trace]
        if self.attempt_log:
            record["attempt_log"] = [attempt.as_dict() for attempt in self.attempt_log]
        return record


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did, given to reporters once every result has been delivered.

    ``not_finished`` counts targets that were never checked or were cancelled
    mid-check (after Ctrl-C or SIGTERM); ``interrupted`` names the signal.
    ``broken_plugins`` has one line per plugin that failed to load or register.
    """

    total: int
    counts: Mapping[Status, int]
    not_finished: int
    duration: float
    interrupted: str | None = None
    reporter_failures: tuple[str, ...] = ()
    broken_plugins: tuple[str, ...] = ()
    #: Reporters a signal stopped before they finished (their files were left as they were).
    reporters_stopped: tuple[str, ...] = ()

    @property
    def worst(self) -> Status:
        return Status.worst(s for s, n in self.counts.items() if n)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """One line: ``5 checks: 3 ok, 1 warning, 1 critical in 1.20 s``."""
        parts = [f"{self.counts.get(s, 0)} {s.value}" for s in Status if self.counts.get(s, 0)]
        text = f"{self.finished} check{'s' if self.finished != 1 else ''}"
        if parts:
            text += ": " + ", ".join(parts)
        text += f" in {self.duration:.2f} s"
        if self.not_finished:
            text += f"; {self.not_finished} not finished"
        if self.interrupted:
            text += f" (interrupted by {self.interrupted})"
        return text
