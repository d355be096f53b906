"""The webhook reporter against a real loopback HTTP receiver."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from anyprobe import Result, Status
from anyprobe.masking import redact_url
from anyprobe.plugins.webhook import WebhookError, WebhookOptions, WebhookReporter

from .reporter_samples import make_result, run_reporter, sample_results, summarize
from .servers.webhook import WebhookReceiver

FAST = {"backoff": 0.01, "timeout": 10}


def reporter(receiver: WebhookReceiver | str, **options: Any) -> WebhookReporter:
    url = receiver if isinstance(receiver, str) else receiver.url
    return WebhookReporter(WebhookOptions(url=url, **{**FAST, **options}))


@pytest.mark.anyio
async def test_per_result_posts_each_record(webhook_receiver: WebhookReceiver) -> None:
    results = sample_results()
    await run_reporter(reporter(webhook_receiver, mode="per_result"), results)

    assert webhook_receiver.bodies() == [json.loads(json.dumps(r.as_dict())) for r in results]
    request = webhook_receiver.requests[0]
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("anyprobe/")


@pytest.mark.anyio
async def test_batch_posts_once_with_the_summary(webhook_receiver: WebhookReceiver) -> None:
    results = sample_results()
    await run_reporter(reporter(webhook_receiver), results)

    (body,) = webhook_receiver.bodies()
    assert [r["name"] for r in body["results"]] == [r.name for r in results]
    assert body["summary"]["counts"] == {"ok": 1, "warning": 1, "critical": 2, "unknown": 1}
    assert body["summary"]["worst"] == "unknown"
    assert body["summary"]["text"] == summarize(results).describe()


@pytest.mark.anyio
async def test_on_change_posts_only_changes_within_a_run(
    webhook_receiver: WebhookReceiver,
) -> None:
    statuses = [
        ("a", Status.OK),  # no history: taken as ok, not a change
        ("b", Status.CRITICAL),  # a change from ok
        ("a", Status.CRITICAL),  # changed
        ("a", Status.CRITICAL),  # same again
        ("a", Status.OK),  # recovered
    ]
    results = [make_result(name, status=status) for name, status in statuses]
    await run_reporter(reporter(webhook_receiver, mode="on_change"), results)

    sent = [(b["name"], b["previous_status"], b["status"]) for b in webhook_receiver.bodies()]
    assert sent == [("b", "ok", "critical"), ("a", "ok", "critical"), ("a", "critical", "ok")]


@pytest.mark.anyio
async def test_on_change_with_a_state_file_spans_runs(
    webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"

    async def run(status: Status) -> list[Any]:
        before = len(webhook_receiver.requests)
        hook = reporter(webhook_receiver, mode="on_change", state_file=str(state))
        await run_reporter(hook, [make_result("db", status=status)])
        return webhook_receiver.bodies()[before:]

    assert [b["status"] for b in await run(Status.CRITICAL)] == ["critical"]
    assert json.loads(state.read_text())["checks"] == {"db": "critical"}
    assert await run(Status.CRITICAL) == []
    assert [(b["previous_status"], b["status"]) for b in await run(Status.OK)] == [
        ("critical", "ok")
    ]
    assert json.loads(state.read_text())["checks"] == {"db": "ok"}


@pytest.mark.anyio
async def test_an_undelivered_change_is_sent_again_next_run(
    webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    webhook_receiver.statuses = [500]
    hook = reporter(webhook_receiver, mode="on_change", state_file=str(state), retries=0)
    with pytest.raises(WebhookError):
        await run_reporter(hook, [make_result("db", status=Status.CRITICAL)])
    assert json.loads(state.read_text())["checks"] == {}

    hook = reporter(webhook_receiver, mode="on_change", state_file=str(state), retries=0)
    await run_reporter(hook, [make_result("db", status=Status.CRITICAL)])
    assert [b["status"] for b in webhook_receiver.bodies()] == ["critical", "critical"]


@pytest.mark.anyio
async def test_a_window_gathers_results_in_one_post(webhook_receiver: WebhookReceiver) -> None:
    results = [make_result(name, status=Status.CRITICAL) for name in ("a", "b")]
    # An hour's window: the end of the run sends it.
    await run_reporter(reporter(webhook_receiver, mode="on_change", window=3600), results)
    await run_reporter(
        reporter(webhook_receiver, mode="per_result", window=3600, template="slack"), results
    )
    records, text = webhook_receiver.bodies()
    assert [(r["name"], r["previous_status"]) for r in records["results"]] == [
        ("a", "ok"),
        ("b", "ok"),
    ]
    assert text == {"text": "CRITICAL a: HTTP 200 in 41 ms\nCRITICAL b: HTTP 200 in 41 ms"}


@pytest.mark.anyio
async def test_slack_template(webhook_receiver: WebhookReceiver) -> None:
    results = sample_results()[:3]
    await run_reporter(reporter(webhook_receiver, mode="per_result", template="slack"), results)
    await run_reporter(reporter(webhook_receiver, template="slack"), results)

    bodies = webhook_receiver.bodies()
    assert bodies[:3] == [
        {"text": "OK api: HTTP 200 in 41 ms"},
        {"text": "WARNING db primary: connected in 812.0 ms, more than warning_after 0.5 s"},
        {"text": "CRITICAL cache: connection refused by 127.0.0.1:6379"},
    ]
    # The batch: the summary, then what needs a look.
    assert bodies[3]["text"].split("\n") == [
        "CRITICAL: " + summarize(results).describe(),
        "WARNING db primary: connected in 812.0 ms, more than warning_after 0.5 s",
        "CRITICAL cache: connection refused by 127.0.0.1:6379",
    ]


@pytest.mark.anyio
async def test_format_string_template_and_text_key(webhook_receiver: WebhookReceiver) -> None:
    hook = reporter(
        webhook_receiver,
        mode="on_change",
        template="[{labels[team]}{labels[missing]}] {name} {previous_status}->{status} "
        "in {duration_ms:.0f} ms",
        text_key="content",
    )
    result = make_result("db", status=Status.CRITICAL, duration=0.25, labels={"team": "ops"})
    await run_reporter(hook, [result])
    assert webhook_receiver.bodies() == [{"content": "[ops] db ok->critical in 250 ms"}]


def test_a_bad_template_is_refused_before_the_run() -> None:
    with pytest.raises(ValidationError, match="its fields can be: name, target"):
        WebhookOptions(url="http://127.0.0.1:9/", template="{nmae} is {status}")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "a URL is needed"),
        ({"url": "ftp://127.0.0.1/x"}, "must be http:// or https://"),
        ({"path": "https://127.0.0.1/x"}, "writes no file: give its URL as url"),
        ({"url": "http://127.0.0.1/", "url_env": "X"}, "not both"),
        ({"url": "http://127.0.0.1/", "password_env": "X"}, "needs a username"),
        ({"url": "http://127.0.0.1/", "state_file": "s.json"}, "only applies to mode"),
        ({"url": "http://127.0.0.1/", "mode": "sometimes"}, "batch"),
        ({"url": "http://127.0.0.1/", "window": 2}, "window does not apply to mode = 'batch'"),
        ({"url": "http://127.0.0.1/", "window": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_options_are_refused(
    options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X", "http://127.0.0.1/hook")
    with pytest.raises(ValidationError, match=message):
        WebhookOptions(**options)


@pytest.mark.anyio
async def test_headers_and_bearer_token_from_the_environment(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-token")
    monkeypatch.setenv("HOOK_KEY", "k3y")
    hook = reporter(
        webhook_receiver,
        headers={"X-Source": "ci"},
        header_env={"X-Api-Key": "HOOK_KEY"},
        bearer_token_env="HOOK_TOKEN",
    )
    await run_reporter(hook, [make_result("a")])
    headers = webhook_receiver.requests[0].headers
    assert headers["authorization"] == "Bearer s3cr3t-token"
    assert headers["x-api-key"] == "k3y"
    assert headers["x-source"] == "ci"


@pytest.mark.anyio
async def test_basic_auth_from_the_environment(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_PASSWORD", "pa55")
    hook = reporter(webhook_receiver, username="anyprobe", password_env="HOOK_PASSWORD")
    await run_reporter(hook, [make_result("a")])
    expected = "Basic " + base64.b64encode(b"anyprobe:pa55").decode()
    assert webhook_receiver.requests[0].headers["authorization"] == expected


@pytest.mark.anyio
async def test_url_from_the_environment(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", webhook_receiver.url + "/T000/secret")
    hook = WebhookReporter(WebhookOptions(url_env="HOOK_URL", **FAST))
    await run_reporter(hook, [make_result("a")])
    assert webhook_receiver.requests[0].path == "/hook/T000/secret"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"url_env": "NO_SUCH_HOOK_VARIABLE"}, "url_env"),
        ({"bearer_token_env": "NO_SUCH_HOOK_VARIABLE"}, "bearer_token_env"),
        ({"username": "u", "password_env": "NO_SUCH_HOOK_VARIABLE"}, "password_env"),
        ({"header_env": {"X-Api-Key": "NO_SUCH_HOOK_VARIABLE"}}, "header_env"),
    ],
)
@pytest.mark.parametrize(("value", "problem"), [(None, "is not set"), ("", "is empty")])
def test_an_unset_or_empty_variable_is_refused_with_the_options(
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    field: str,
    value: str | None,
    problem: str,
) -> None:
    if value is None:
        monkeypatch.delenv("NO_SUCH_HOOK_VARIABLE", raising=False)
    else:
        monkeypatch.setenv("NO_SUCH_HOOK_VARIABLE", value)
    url = {} if "url_env" in options else {"url": "http://127.0.0.1:9/"}
    with pytest.raises(ValidationError) as info:
        WebhookOptions(**url, **options)
    assert info.value.error_count() == 1
    error = info.value.errors()[0]
    assert ".".join(map(str, error["loc"])) == field
    assert f"environment variable NO_SUCH_HOOK_VARIABLE {problem}" in error["msg"]


def test_a_url_env_that_is_not_a_url_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL", "ftp://127.0.0.1/T000/k3y-s3cr3t")
    with pytest.raises(ValidationError) as info:
        WebhookOptions(url_env="HOOK_URL")
    message = info.value.errors(include_input=False)[0]["msg"]
    assert message == (
        "Value error, environment variable HOOK_URL: the URL must be http:// or https://HOST/..."
    )
    assert "k3y-s3cr3t" not in message


@pytest.mark.anyio
async def test_failed_posts_are_retried(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.statuses = [503, 429]
    await run_reporter(reporter(webhook_receiver, retries=2), [make_result("a")])
    assert len(webhook_receiver.requests) == 3
    assert webhook_receiver.bodies()[0] == webhook_receiver.bodies()[2]


@pytest.mark.anyio
async def test_a_refusal_is_not_retried(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.statuses = [400]
    with pytest.raises(WebhookError, match=r"1 of 1 POST to http://127\.0\.0\.1:\d+ failed"):
        await run_reporter(reporter(webhook_receiver, retries=3), [make_result("a")])
    assert len(webhook_receiver.requests) == 1


@pytest.mark.anyio
async def test_a_webhook_down_fails_at_the_end_in_one_line(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-token")
    url = f"http://127.0.0.1:{closed_port}/services/T000/SECRETKEY?token=abc"
    hook = reporter(url, mode="per_result", retries=1, bearer_token_env="HOOK_TOKEN")
    with pytest.raises(WebhookError) as caught:
        await run_reporter(hook, sample_results())

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"5 of 5 POSTs to http://127.0.0.1:{closed_port} failed")
    assert "down after 3 failures in a row" in message
    assert "ConnectError" in message
    for secret in ("SECRETKEY", "services", "token=abc", "s3cr3t-token"):
        assert secret not in message


@pytest.mark.anyio
async def test_a_webhook_down_is_given_up_after_three_failures(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.default_status = 500
    hook = reporter(webhook_receiver, mode="per_result", retries=1)
    with pytest.raises(WebhookError, match=r"10 of 10 POSTs .* failed .*last error: HTTP 500"):
        await run_reporter(hook, [make_result(f"c{i}") for i in range(10)])
    # Three deliveries of two attempts each, then no more.
    assert len(webhook_receiver.requests) == 6


@pytest.mark.anyio
async def test_a_slow_webhook_never_holds_the_results_back(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The receiver holds every request; the reporter must still read every result."""
    webhook_receiver.hold = True
    hook = reporter(webhook_receiver, mode="per_result", queue_size=5)
    results = [make_result(f"c{i}") for i in range(50)]
    send, receive = anyio.create_memory_object_stream[Result](1)
    from anyprobe import ReportContext, ResultStream

    ctx = ReportContext(total=len(results))
    caplog.set_level(logging.WARNING, logger="anyprobe.webhook")

    async def consume() -> None:
        async with receive:
            await hook.report(ResultStream(receive), ctx)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        # With a one-result buffer, this loop only ends if the reporter keeps
        # reading while its POST is held: fail (not hang) if it does not.
        with anyio.fail_after(10):
            async with send:
                for result in results:
                    await send.send(result)
        ctx.summary = summarize(results)
        assert webhook_receiver.hold
        await anyio.to_thread.run_sync(webhook_receiver.arrived.acquire, True, 10)
        webhook_receiver.release()

    delivered = len(webhook_receiver.requests)
    assert delivered in (5, 6)  # the queue, plus the one being posted when it filled
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    shown = redact_url(webhook_receiver.url, path=False)
    assert record.getMessage() == (
        f"webhook {shown}: {50 - delivered} results dropped: "
        "more than queue_size=5 were waiting to be posted"
    )


def test_the_shown_url_never_has_the_path() -> None:
    assert redact_url("https://user:pw@hooks.example.test/T0/B0/key?x=1", path=False) == (
        "https://hooks.example.test"
    )
    assert redact_url("http://[::1]:8080/x", path=False) == "http://[::1]:8080"
    assert redact_url("http://h:1?key=1", path=False) == "http://h:1"
