"""The pagerduty reporter: PagerDuty Events API v2 (trigger and resolve).

Each change is one event: an alert that fires (or reminds) triggers, one that
resolves resolves, with the same ``dedup_key`` (``anyprobe/ALERT/CHECK``; a
plain status change uses ``anyprobe/CHECK``), so PagerDuty keeps one incident
per alert and check. The routing key is read from ``routing_key_env`` and
sent only in the body of each event, never shown in a log or an error.
It is an :class:`anyprobe.Notifier`: retries, the bounded queue and the
failure line at the end come from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

import anyprobe
from anyprobe.plugins._alert_text import incident, no_window

if TYPE_CHECKING:
    import httpx

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
#: PagerDuty's severities; an alert's other severities are sent as "error".
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024


class PagerDutyError(anyprobe.AnyprobeError):
    """PagerDuty could not be reached, or refused an event."""


class PagerDutyOptions(anyprobe.NotifierOptions):
    url: str | None = Field(
        default=EVENTS_URL, description="The Events API v2 endpoint (-r pagerduty=URL)."
    )
    routing_key_env: anyprobe.SecretEnv = Field(
        description="Environment variable holding the integration's routing key."
    )
    source: str = Field(
        default="anyprobe", min_length=1, description="The event's source (this monitor)."
    )
    severity: Literal["critical", "error", "warning", "info"] | None = Field(
        default=None,
        description="Every event's severity; default: the alert's (critical, error, "
        "warning, info; others are sent as error), or the check's status.",
    )

    @field_validator("window")
    @classmethod
    def _one_event_each(cls, value: float) -> float:
        return no_window(value)


class PagerDutyReporter(anyprobe.Notifier[PagerDutyOptions]):
    """``-r pagerduty``: trigger and resolve PagerDuty incidents."""

    name = "pagerduty"
    Options = PagerDutyOptions
    description = "PagerDuty Events API v2: trigger and resolve an incident per alert and check."
    error_type = PagerDutyError
    message_word = "event"

    def format(self, changes: list[anyprobe.StatusChange]) -> Any:
        return [self._event(change) for change in changes]

    def _event(self, change: anyprobe.StatusChange) -> dict[str, Any]:
        told = incident(change)
        if told.resolved:
            return {"event_action": "resolve", "dedup_key": told.key}
        severity = self.options.severity or told.severity
        if severity not in SEVERITIES:
            severity = "error"
        return {
            "event_action": "trigger",
            "dedup_key": told.key,
            "payload": {
                "summary": told.headline[:MAX_SUMMARY],
                "source": self.options.source,
                "severity": severity,
                "timestamp": told.since,
                "component": told.check,
                "group": told.alert or told.check,
                "class": told.probe,
                "custom_details": told.details(),
            },
        }

    async def send(self, message: Any) -> httpx.Response | None:
        key = self.options.routing_key_env.get_secret_value()
        response = None
        for event in message:
            # The key joins each event after masking: it must reach PagerDuty.
            response = await self.http.post(self.target_url, json={"routing_key": key, **event})
            if not response.is_success:
                return response
        return response


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(PagerDutyReporter)
