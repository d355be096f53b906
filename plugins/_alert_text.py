"""What the incident notifiers (email, pagerduty, opsgenie, apprise) say about a change.

A change an ``[[alert]]`` sent carries its :class:`anyprobe.AlertNotice`
(firing, reminder or resolved); a plain status change (a notifier used without
``[[alert]]``, or by ``anyprobe run``) is told the same way: a check that is
not ok fires, one that is ok again resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyprobe

_SEVERITY = {
    anyprobe.Status.OK: "info",
    anyprobe.Status.WARNING: "warning",
    anyprobe.Status.CRITICAL: "critical",
    anyprobe.Status.UNKNOWN: "critical",
}


@dataclass(frozen=True)
class Incident:
    """One change, as an incident tool sees it. ``key`` is the same for the
    firing, reminders and resolution of one alert and check."""

    check: str
    status: str
    summary: str
    severity: str
    since: str
    event: str
    alert: str | None
    key: str
    target: str
    probe: str
    failures: int
    labels: dict[str, str]

    @property
    def resolved(self) -> bool:
        return self.event == "resolved"

    @property
    def headline(self) -> str:
        word = "RESOLVED" if self.resolved else self.status.upper()
        return f"[{word}] {self.check}: {self.summary}"

    def details(self) -> dict[str, Any]:
        """The fields every payload carries (no secret: the target is shown
        as the check's display URL, without credentials)."""
        details: dict[str, Any] = {
            "check": self.check,
            "status": self.status,
            "summary": self.summary,
            "severity": self.severity,
            "since": self.since,
            "event": self.event,
            "target": self.target,
            "probe": self.probe,
        }
        if self.alert is not None:
            details["alert"] = self.alert
            details["failures"] = self.failures
        if self.labels:
            details["labels"] = dict(self.labels)
        return details


def incident(change: anyprobe.StatusChange) -> Incident:
    """The incident ``change`` tells about."""
    result = change.result
    notice = change.alert
    if notice is not None:
        return Incident(
            check=notice.check,
            status=result.status.value,
            summary=result.summary,
            severity=notice.severity,
            since=notice.since or result.started.isoformat(),
            event=notice.event,
            alert=notice.alert,
            key=notice.key,
            target=result.target,
            probe=result.probe,
            failures=notice.failures,
            labels=dict(result.labels),
        )
    ok = result.status is anyprobe.Status.OK
    return Incident(
        check=result.name,
        status=result.status.value,
        summary=result.summary,
        severity=_SEVERITY[result.status],
        since=result.started.isoformat(),
        event="resolved" if ok else "firing",
        alert=None,
        key=f"anyprobe/{result.name}",
        target=result.target,
        probe=result.probe,
        failures=0,
        labels=dict(result.labels),
    )


def no_window(window: float) -> float:
    """For a notifier that sends one event per request: a window is refused."""
    if window:
        raise ValueError("window does not apply: each change is one event")
    return window
