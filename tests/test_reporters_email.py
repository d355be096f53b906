"""The email reporter against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from anyprobe import Status
from anyprobe.plugins.email import EmailError, EmailOptions, EmailReporter

from .reporter_samples import make_result, run_reporter
from .servers.banner import TlsCa
from .servers.smtp import SmtpServer

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-smtp-password"


def alert(name: str, event: str, status: Status, summary: str = "connection refused") -> Any:
    result = make_result(name, status=status, summary=summary)
    notice = {
        "alert": "pager",
        "check": name,
        "event": event,
        "severity": "critical",
        "since": "2026-11-24T10:00:00+00:00",
        "failures": 3,
    }
    return dataclasses.replace(result, details={"alert": notice})


def reporter(server: SmtpServer, tls_ca: TlsCa, **options: Any) -> EmailReporter:
    settings = {
        "host": "127.0.0.1",
        "port": server.port,
        "ca_file": str(tls_ca.ca_file),
        "from": "anyprobe@example.test",
        "to": ["oncall@example.test", "ops@example.test"],
        "backoff": 0,
        **options,
    }
    return EmailReporter(EmailOptions.model_validate(settings))


async def test_starttls_login_and_one_message_per_alert(
    smtp_server: Callable[..., SmtpServer],
    tls_ca: TlsCa,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    server = smtp_server("starttls", users={"monitor": PASSWORD})
    mail = reporter(server, tls_ca, username="monitor", password_env="SMTP_PASSWORD")
    await run_reporter(
        mail, [alert("db", "firing", Status.CRITICAL), alert("db", "resolved", Status.OK, "ok")]
    )
    assert server.logins == ["monitor", "monitor"]
    first, second = server.messages
    assert first["Subject"] == "[FIRING] db: connection refused"
    assert second["Subject"] == "[RESOLVED] db: ok"
    assert first["From"] == "anyprobe@example.test"
    assert first["To"] == "oncall@example.test, ops@example.test"
    assert server.envelopes[0] == (
        "anyprobe@example.test",
        ["oncall@example.test", "ops@example.test"],
    )
    body = first.get_content()
    for line in ("check: db", "status: critical", "severity: critical", "alert: pager"):
        assert line in body
    assert "since: 2026-11-24T10:00:00+00:00" in body
    assert PASSWORD not in body and PASSWORD not in caplog.text


async def test_implicit_tls(smtp_server: Callable[..., SmtpServer], tls_ca: TlsCa) -> None:
    server = smtp_server("tls")
    await run_reporter(
        reporter(server, tls_ca, security="tls", subject="{STATUS} {check} ({severity})"),
        [alert("api", "firing", Status.CRITICAL)],
    )
    [message] = server.messages
    assert message["Subject"] == "CRITICAL api (critical)"


async def test_an_untrusted_certificate_is_refused(
    smtp_server: Callable[..., SmtpServer], tls_ca: TlsCa
) -> None:
    server = smtp_server("starttls")
    mail = EmailReporter(
        EmailOptions.model_validate(
            {
                "host": "127.0.0.1",
                "port": server.port,
                "from": "anyprobe@example.test",
                "to": "oncall@example.test",
                "retries": 0,
            }
        )
    )  # the system's CAs: trustme's is not one of them
    with pytest.raises(EmailError) as info:
        await run_reporter(mail, [alert("db", "firing", Status.CRITICAL)])
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value)
    assert server.messages == []


async def test_a_refused_message_is_tried_again(
    smtp_server: Callable[..., SmtpServer], tls_ca: TlsCa
) -> None:
    server = smtp_server("starttls")
    server.refuse = 2
    delivered: list[tuple[bool, str]] = []
    mail = reporter(server, tls_ca, retries=2)
    mail.on_delivery = lambda ok, error: delivered.append((ok, error))
    await run_reporter(mail, [alert("db", "firing", Status.CRITICAL)])
    assert len(server.messages) == 1
    assert delivered == [(True, "")]


async def test_plain_status_changes_without_alerts(
    smtp_server: Callable[..., SmtpServer], tls_ca: TlsCa
) -> None:
    server = smtp_server("starttls")
    results = [
        make_result("web", status=Status.OK),
        make_result("web", status=Status.WARNING, summary="slow: 2.1 s"),
        make_result("web", status=Status.WARNING, summary="slow: 2.2 s"),
        make_result("web", status=Status.OK),
    ]
    await run_reporter(reporter(server, tls_ca), results)
    assert [m["Subject"] for m in server.messages] == [
        "[FIRING] web: slow: 2.1 s",
        "[RESOLVED] web: HTTP 200 in 41 ms",
    ]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"password_env": "SMTP_PASSWORD"}, "password_env needs a username"),
        (
            {"security": "none", "username": "u", "password_env": "SMTP_PASSWORD"},
            "only sent over TLS",
        ),
        ({"subject": "{checkname}"}, "unknown field {checkname}"),
        ({"subject": "{check:>999999}"}, "no format spec"),
        ({"to": []}, "to"),
        ({"url": "http://127.0.0.1/"}, "no url"),
    ],
)
def test_bad_options_are_refused(
    options: dict[str, Any], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    settings = {"host": "smtp.example.test", "from": "a@example.test", "to": ["b@example.test"]}
    with pytest.raises(ValidationError) as info:
        EmailOptions.model_validate({**settings, **options})
    assert fragment in str(info.value)
    assert PASSWORD not in str(info.value)
