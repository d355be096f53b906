"""The opsgenie reporter: create and close Opsgenie alerts (Alert API v2).

An alert that fires (or reminds) creates an Opsgenie alert whose ``alias`` is
``anyprobe/ALERT/CHECK`` (Opsgenie counts a repeat instead of opening another);
one that resolves closes it by that alias. The API key is read from
``api_key_env`` and sent as ``Authorization: GenieKey ...``, a credential
header: it is masked in every log line and error. It is an
:class:`anyprobe.Notifier`: retries, the bounded queue and the failure line
at the end come from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

import anyprobe
from anyprobe.plugins._alert_text import incident, no_window

if TYPE_CHECKING:
    import httpx

API_URL = "https://api.opsgenie.com"
PRIORITIES = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}
MAX_MESSAGE = 130
MAX_DESCRIPTION = 15000


class OpsgenieError(anyprobe.AnyprobeError):
    """Opsgenie could not be reached, or refused a request."""


class OpsgenieOptions(anyprobe.NotifierOptions):
    url: str | None = Field(
        default=API_URL,
        description="The API's base URL: https://api.opsgenie.com, or "
        "https://api.eu.opsgenie.com for the EU instance (-r opsgenie=URL).",
    )
    api_key_env: anyprobe.SecretEnv = Field(
        description="Environment variable holding the API integration's key."
    )
    source: str = Field(default="anyprobe", min_length=1, description="The alerts' source.")
    priority: Literal["P1", "P2", "P3", "P4", "P5"] | None = Field(
        default=None,
        description="Every alert's priority; default from the alert's severity "
        "(critical P1, error P2, warning P3, info P5, others P3).",
    )
    tags: list[str] = Field(default_factory=list, description="Tags added to every alert.")
    responders: list[dict[str, str]] = Field(
        default_factory=list,
        description='Who is told, as Opsgenie names them: [{type = "team", name = "ops"}].',
    )

    @field_validator("window")
    @classmethod
    def _one_event_each(cls, value: float) -> float:
        return no_window(value)


class OpsgenieReporter(anyprobe.Notifier[OpsgenieOptions]):
    """``-r opsgenie``: create and close Opsgenie alerts."""

    name = "opsgenie"
    Options = OpsgenieOptions
    description = "Opsgenie Alert API: create an alert per alert and check, close it when resolved."
    error_type = OpsgenieError
    message_word = "request"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"GenieKey {self.options.api_key_env.get_secret_value()}"}

    def format(self, changes: list[anyprobe.StatusChange]) -> Any:
        return [self._request(change) for change in changes]

    def _request(self, change: anyprobe.StatusChange) -> dict[str, Any]:
        told = incident(change)
        if told.resolved:
            return {
                "path": f"/v2/alerts/{quote(told.key, safe='')}/close?identifierType=alias",
                "body": {"source": self.options.source, "note": told.headline},
            }
        priority = self.options.priority or PRIORITIES.get(told.severity, "P3")
        body: dict[str, Any] = {
            "message": told.headline[:MAX_MESSAGE],
            "alias": told.key,
            "description": _description(told.details())[:MAX_DESCRIPTION],
            "priority": priority,
            "source": self.options.source,
            "entity": told.check,
            "tags": [*self.options.tags, f"severity:{told.severity}", f"status:{told.status}"],
            "details": {k: str(v) for k, v in told.details().items() if k != "labels"}
            | {f"label.{k}": v for k, v in told.labels.items()},
        }
        if self.options.responders:
            body["responders"] = self.options.responders
        return {"path": "/v2/alerts", "body": body}

    async def send(self, message: Any) -> httpx.Response | None:
        base = self.target_url.rstrip("/")
        response = None
        for request in message:
            response = await self.http.post(base + request["path"], json=request["body"])
            if not response.is_success:
                return response
        return response


def _description(details: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in details.items())


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(OpsgenieReporter)
