"""The pagerduty, opsgenie and apprise reporters against a real loopback HTTP receiver."""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from anyprobe import Result, Status
from anyprobe.plugins.apprise import AppriseOptions, AppriseReporter
from anyprobe.plugins.opsgenie import OpsgenieError, OpsgenieOptions, OpsgenieReporter
from anyprobe.plugins.pagerduty import PagerDutyError, PagerDutyOptions, PagerDutyReporter

from .reporter_samples import make_result, run_reporter
from .servers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef"
API_KEY = "0psg3n1e-api-key-0123456789"
SINCE = "2026-11-24T10:00:00+00:00"


def alert(name: str, event: str, status: Status, summary: str = "connection refused") -> Result:
    result = make_result(name, status=status, summary=summary, labels={"team": "core"})
    notice = {
        "alert": "pager",
        "check": name,
        "event": event,
        "severity": "critical",
        "since": SINCE,
        "failures": 3,
    }
    return dataclasses.replace(result, details={"alert": notice})


DETAILS = {
    "check": "db",
    "status": "critical",
    "summary": "connection refused",
    "severity": "critical",
    "since": SINCE,
    "event": "firing",
    "target": "tcp://127.0.0.1:9/db",
    "probe": "tcp",
    "alert": "pager",
    "failures": 3,
    "labels": {"team": "core"},
}


# -- pagerduty -------------------------------------------------------------------------


def pagerduty(receiver: WebhookReceiver, **options: Any) -> PagerDutyReporter:
    settings = {"url": receiver.url, "routing_key_env": "PD_ROUTING_KEY", "backoff": 0, **options}
    return PagerDutyReporter(PagerDutyOptions.model_validate(settings))


async def test_pagerduty_triggers_and_resolves_with_one_dedup_key(
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    results = [
        alert("db", "firing", Status.CRITICAL),
        alert("db", "reminder", Status.CRITICAL),
        alert("db", "resolved", Status.OK, "connected"),
    ]
    await run_reporter(pagerduty(webhook_receiver), results)
    trigger, reminder, resolve = webhook_receiver.bodies()
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "anyprobe/pager/db",
        "payload": {
            "summary": "[CRITICAL] db: connection refused",
            "source": "anyprobe",
            "severity": "critical",
            "timestamp": SINCE,
            "component": "db",
            "group": "pager",
            "class": "tcp",
            "custom_details": DETAILS,
        },
    }
    assert reminder["event_action"] == "trigger"
    assert reminder["dedup_key"] == "anyprobe/pager/db"
    assert reminder["payload"]["custom_details"]["event"] == "reminder"
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "anyprobe/pager/db",
    }
    assert ROUTING_KEY not in caplog.text


async def test_pagerduty_plain_changes_and_its_severity_option(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    results = [
        make_result("web", status=Status.WARNING, summary="slow"),
        make_result("web", status=Status.OK),
    ]
    await run_reporter(pagerduty(webhook_receiver, severity="info"), results)
    trigger, resolve = webhook_receiver.bodies()
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", "anyprobe/web")
    assert trigger["payload"]["severity"] == "info"
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", "anyprobe/web")


async def test_pagerduty_retries_a_failing_endpoint_then_fails_with_one_line(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    webhook_receiver.statuses = [500, 502]  # then 200
    delivered: list[tuple[bool, str]] = []
    reporter = pagerduty(webhook_receiver, retries=2)
    reporter.on_delivery = lambda ok, error: delivered.append((ok, error))
    await run_reporter(reporter, [alert("db", "firing", Status.CRITICAL)])
    assert len(webhook_receiver.requests) == 3
    assert delivered == [(True, "")]

    webhook_receiver.default_status = 400
    failing = pagerduty(webhook_receiver, retries=2)
    failing.on_delivery = lambda ok, error: delivered.append((ok, error))
    with pytest.raises(PagerDutyError) as info:
        await run_reporter(failing, [alert("db", "firing", Status.CRITICAL)])
    assert len(webhook_receiver.requests) == 4, "a 400 is final: no retry"
    assert delivered[-1] == (False, "HTTP 400 Bad Request")
    assert "\n" not in str(info.value) and ROUTING_KEY not in str(info.value)


def test_pagerduty_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    options = PagerDutyOptions.model_validate({"routing_key_env": "PD_ROUTING_KEY"})
    assert options.url == "https://events.pagerduty.com/v2/enqueue"
    with pytest.raises(ValidationError, match="window does not apply"):
        PagerDutyOptions.model_validate({"routing_key_env": "PD_ROUTING_KEY", "window": 5})
    with pytest.raises(ValidationError, match="MISSING_KEY is not set"):
        PagerDutyOptions.model_validate({"routing_key_env": "MISSING_KEY"})


# -- opsgenie ---------------------------------------------------------------------------


def opsgenie(receiver: WebhookReceiver, **options: Any) -> OpsgenieReporter:
    assert receiver.server is not None
    base = receiver.server.url("").rstrip("/")
    settings = {"url": base, "api_key_env": "OPSGENIE_KEY", "backoff": 0, **options}
    return OpsgenieReporter(OpsgenieOptions.model_validate(settings))


async def test_opsgenie_creates_and_closes_by_alias(
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPSGENIE_KEY", API_KEY)
    results = [
        alert("db", "firing", Status.CRITICAL),
        alert("db", "resolved", Status.OK, "connected"),
    ]
    await run_reporter(opsgenie(webhook_receiver, tags=["anyprobe"]), results)
    create, close = webhook_receiver.requests
    assert create.method == "POST" and create.target == "/v2/alerts"
    assert create.headers["authorization"] == f"GenieKey {API_KEY}"
    assert create.json() == {
        "message": "[CRITICAL] db: connection refused",
        "alias": "anyprobe/pager/db",
        "description": "\n".join(f"{k}: {v}" for k, v in DETAILS.items()),
        "priority": "P1",
        "source": "anyprobe",
        "entity": "db",
        "tags": ["anyprobe", "severity:critical", "status:critical"],
        "details": {
            **{k: str(v) for k, v in DETAILS.items() if k != "labels"},
            "label.team": "core",
        },
    }
    assert close.target == "/v2/alerts/anyprobe%2Fpager%2Fdb/close?identifierType=alias"
    assert close.json() == {"source": "anyprobe", "note": "[RESOLVED] db: connected"}
    assert API_KEY not in caplog.text


async def test_opsgenie_failure_never_shows_the_key(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGENIE_KEY", API_KEY)
    webhook_receiver.default_status = 503
    webhook_receiver.error_headers = {"Retry-After": "0"}
    with pytest.raises(OpsgenieError) as info:
        await run_reporter(
            opsgenie(webhook_receiver, retries=1), [alert("db", "firing", Status.CRITICAL)]
        )
    assert len(webhook_receiver.requests) == 2
    assert "HTTP 503" in str(info.value) and API_KEY not in str(info.value)


# -- apprise ------------------------------------------------------------------------------


async def test_apprise_posts_through_its_json_service(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert webhook_receiver.server is not None
    url = f"json://127.0.0.1:{webhook_receiver.server.port}/hook"
    monkeypatch.setenv("APPRISE_URLS", url)
    reporter = AppriseReporter(
        AppriseOptions.model_validate({"urls_env": "APPRISE_URLS", "backoff": 0})
    )
    await run_reporter(
        reporter,
        [alert("db", "firing", Status.CRITICAL), alert("db", "resolved", Status.OK, "connected")],
    )
    firing, resolved = webhook_receiver.bodies()
    assert firing["title"] == "anyprobe"
    assert firing["message"] == (
        f"[CRITICAL] db: connection refused (alert pager, critical, since {SINCE})"
    )
    assert firing["type"] == "failure"
    assert resolved["type"] == "success"
    assert resolved["message"].startswith("[RESOLVED] db: connected")


async def test_apprise_failure_is_retried(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert webhook_receiver.server is not None
    monkeypatch.setenv("APPRISE_URLS", f"json://127.0.0.1:{webhook_receiver.server.port}/hook")
    webhook_receiver.statuses = [500]
    delivered: list[tuple[bool, str]] = []
    reporter = AppriseReporter(
        AppriseOptions.model_validate({"urls_env": "APPRISE_URLS", "backoff": 0, "retries": 1})
    )
    reporter.on_delivery = lambda ok, error: delivered.append((ok, error))
    await run_reporter(reporter, [alert("db", "firing", Status.CRITICAL)])
    assert len(webhook_receiver.requests) == 2
    assert delivered == [(True, "")]


def test_apprise_missing_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPRISE_URLS", "json://127.0.0.1:9/")
    monkeypatch.setitem(sys.modules, "apprise", None)
    with pytest.raises(ValidationError) as info:
        AppriseOptions.model_validate({"urls_env": "APPRISE_URLS"})
    assert "pip install 'anyprobe[apprise]'" in str(info.value)
