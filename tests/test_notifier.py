"""anyprobe.Notifier against real loopback HTTP receivers: batching, retries,
state between runs, the flush at the end of a run and of a serve config,
secrets, and ``-r NAME=DEST`` filling the destination a reporter declares."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import anyprobe
from anyprobe import PluginManager, ReportContext, Result, ResultStream, StatusChange
from anyprobe._cli_reporters import parse_report
from anyprobe._config import make_reporter
from anyprobe.testing import feed_reporter, make_result, run_cli

from .servers.serve import SilentTarget
from .servers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

#: A bound on every wait of these tests (never an assertion on time).
LIMIT = 30.0


class ChatOptions(anyprobe.NotifierOptions):
    pass


class Chat(anyprobe.Notifier[ChatOptions]):
    """A third-party notifier: one message per batch of changes."""

    name = "chat"
    Options = ChatOptions

    def format(self, changes: list[StatusChange]) -> Any:
        lines = [
            f"{c.result.name} {c.previous.value}->{c.result.status.value}: {c.result.summary}"
            for c in changes
        ]
        return {"text": "\n".join(lines)}


class BrokenFormat(Chat):
    name = "broken"

    def format(self, changes: list[StatusChange]) -> Any:
        raise KeyError("no such field")


def chat(url: str, **options: Any) -> Chat:
    return Chat(ChatOptions(url=url, **{"backoff": 0.01, **options}))


def texts(receiver: WebhookReceiver) -> list[list[str]]:
    return [body["text"].split("\n") for body in receiver.bodies()]


def critical(name: str, summary: str = "connection refused") -> Result:
    return make_result(name, "critical", summary)


async def wait_for_request(receiver: WebhookReceiver) -> None:
    got = await anyio.to_thread.run_sync(receiver.arrived.acquire, True, LIMIT)
    assert got, "the receiver got no request"


# -- batching -------------------------------------------------------------------------


async def test_changes_within_the_window_go_in_one_message(
    webhook_receiver: WebhookReceiver,
) -> None:
    notifier = chat(webhook_receiver.url, window=1.0)
    send, receive = anyio.create_memory_object_stream[Result](10)
    ctx = ReportContext(total=5)

    async def consume() -> None:
        async with receive:
            await notifier.report(ResultStream(receive), ctx)

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            async with send:
                for name in ("a", "b", "c"):
                    await send.send(critical(name))
                # The first window closes and its message is sent ...
                await wait_for_request(webhook_receiver)
                # ... before these two: they open the next one.
                await send.send(make_result("a", "ok", "up"))
                await send.send(critical("d"))
            ctx.summary = anyprobe.RunSummary(total=5, counts={}, not_finished=0, duration=0)

    assert texts(webhook_receiver) == [
        [
            "a ok->critical: connection refused",
            "b ok->critical: connection refused",
            "c ok->critical: connection refused",
        ],
        ["a critical->ok: up", "d ok->critical: connection refused"],
    ]


async def test_the_end_of_the_run_sends_what_the_window_holds(
    webhook_receiver: WebhookReceiver,
) -> None:
    # An hour's window: only the end of the stream can send this message.
    notifier = chat(webhook_receiver.url, window=3600)
    with anyio.fail_after(LIMIT):
        await feed_reporter(notifier, [critical("a"), make_result("b"), critical("c")])
    assert texts(webhook_receiver) == [
        ["a ok->critical: connection refused", "c ok->critical: connection refused"]
    ]


async def test_without_a_window_each_change_is_a_message(
    webhook_receiver: WebhookReceiver,
) -> None:
    results = [critical("a"), critical("a"), make_result("a"), critical("b")]
    await feed_reporter(chat(webhook_receiver.url), results)
    assert texts(webhook_receiver) == [
        ["a ok->critical: connection refused"],
        ["a critical->ok: ok"],
        ["b ok->critical: connection refused"],
    ]


# -- retries and failures ---------------------------------------------------------------


async def test_500_and_429_are_retried_and_retry_after_is_honoured(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.statuses = [500, 429]
    webhook_receiver.error_headers = {"Retry-After": "0"}
    # backoff alone would wait 30 s, then 60 s: Retry-After says now.
    notifier = chat(webhook_receiver.url, retries=2, backoff=30)
    with anyio.fail_after(LIMIT / 2):
        await feed_reporter(notifier, [critical("a")])
    assert len(webhook_receiver.requests) == 3
    assert webhook_receiver.bodies()[0] == webhook_receiver.bodies()[2]


async def test_retry_after_is_bounded(
    webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyprobe import _notify

    monkeypatch.setattr(_notify, "MAX_BACKOFF", 0.01)
    webhook_receiver.statuses = [429]
    webhook_receiver.error_headers = {"Retry-After": "86400"}
    with anyio.fail_after(LIMIT):
        await feed_reporter(chat(webhook_receiver.url, retries=1), [critical("a")])
    assert len(webhook_receiver.requests) == 2


def test_retry_after_dates_and_garbage() -> None:
    from anyprobe._notify import retry_after

    assert retry_after("7") == 7.0
    assert retry_after("-3") == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("soon") is None
    assert retry_after("nan") is None
    assert retry_after(None) is None


async def test_no_answer_is_retried_then_the_reporter_fails(
    silent_target: SilentTarget,
) -> None:
    notifier = chat(f"{silent_target.url}hook/KEY", retries=1, timeout=0.2)
    with anyio.fail_after(LIMIT):
        summary = await feed_reporter(notifier, [critical("a")], allow_failure=True)
    (failure,) = summary.reporter_failures
    assert failure == (
        f"reporter chat failed: NotifierError: 1 of 1 POST to "
        f"http://127.0.0.1:{silent_target.port} failed; last error: ReadTimeout"
    )
    assert silent_target.wait_connected(0) and silent_target.wait_connected(0)


async def test_500s_are_given_up_and_reported_as_a_reporter_failure(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.default_status = 500
    notifier = chat(webhook_receiver.url, retries=2)
    summary = await feed_reporter(notifier, [critical("a")], allow_failure=True)
    assert len(webhook_receiver.requests) == 3
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    assert summary.reporter_failures == (
        f"reporter chat failed: NotifierError: 1 of 1 POST to http://127.0.0.1:{port} failed; "
        "last error: HTTP 500 Internal Server Error",
    )
    with pytest.raises(AssertionError, match="reporter chat failed"):
        await feed_reporter(chat(webhook_receiver.url, retries=0), [critical("a")])


async def test_a_format_that_raises_is_a_reporter_failure(
    webhook_receiver: WebhookReceiver,
) -> None:
    notifier = BrokenFormat(ChatOptions(url=webhook_receiver.url))
    summary = await feed_reporter(notifier, [critical("a")], allow_failure=True)
    assert summary.reporter_failures == (
        "reporter broken failed: NotifierError: 1 of 1 POST to "
        f"{webhook_receiver.url.removesuffix('/hook')} failed; "
        "last error: format: KeyError: 'no such field'",
    )
    assert webhook_receiver.requests == []


async def test_a_failing_notifier_costs_a_run_no_result(
    manager: PluginManager, closed_port: int
) -> None:
    notifier = chat(f"http://127.0.0.1:{closed_port}/hook", retries=0)
    record = await anyprobe.testing.run_checks(
        manager,
        [f"tcp://127.0.0.1:{closed_port}", f"tcp://127.0.0.1:{closed_port}/b"],
        reporters=[notifier],
        allow_reporter_failures=True,
    )
    assert len(record.results) == 2
    (failure,) = record.summary.reporter_failures
    assert failure.startswith("reporter chat failed: NotifierError: 2 of 2 POSTs to ")


# -- state between runs -------------------------------------------------------------------


async def test_state_between_runs_notifies_only_what_changed_since(
    webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"

    async def run(*results: Result) -> list[list[str]]:
        before = len(webhook_receiver.requests)
        notifier = chat(webhook_receiver.url, state_file=str(state), window=3600)
        await feed_reporter(notifier, results)
        return texts(webhook_receiver)[before:]

    assert await run(critical("a"), make_result("b")) == [["a ok->critical: connection refused"]]
    assert json.loads(state.read_text())["checks"] == {"a": "critical"}
    assert await run(critical("a"), make_result("b")) == []
    assert await run(make_result("a", summary="up"), critical("b")) == [
        ["a critical->ok: up", "b ok->critical: connection refused"]
    ]
    assert json.loads(state.read_text())["checks"] == {"a": "ok", "b": "critical"}


async def test_a_change_not_delivered_is_sent_next_run(
    webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    webhook_receiver.statuses = [503]
    notifier = chat(webhook_receiver.url, state_file=str(state), retries=0)
    await feed_reporter(notifier, [critical("a")], allow_failure=True)
    assert json.loads(state.read_text())["checks"] == {}
    await feed_reporter(chat(webhook_receiver.url, state_file=str(state)), [critical("a")])
    assert texts(webhook_receiver) == [["a ok->critical: connection refused"]] * 2


# -- secrets ----------------------------------------------------------------------------


class TokenChat(Chat):
    name = "tokenchat"

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer s3cr3t-token"}


async def test_the_secret_url_and_token_are_in_no_message_log_or_error(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook_receiver.default_status = 500
    url = f"{webhook_receiver.url}/T000/SECRETKEY?token=abcdef"
    # A result that quotes the URL and the token (a check of the chat itself).
    echoed = critical("a", f"POST {url} with Bearer s3cr3t-token: HTTP 500")
    notifier = TokenChat(ChatOptions(url=url, retries=1, backoff=0, queue_size=1))
    summary = await feed_reporter(
        notifier, [echoed, *(critical(f"c{i}") for i in range(5))], allow_failure=True
    )
    shown = [
        *summary.reporter_failures,
        *(record.getMessage() for record in caplog.records),
        *(request.body.decode() for request in webhook_receiver.requests),
    ]
    assert any("HTTP Request: POST" in line for line in shown)  # httpx's own log line
    assert any("dropped" in line for line in shown)
    assert any("1 of 1 POST to" in line for line in shown)
    for line in shown:
        for secret in ("SECRETKEY", "T000", "token=abcdef", "abcdef", "s3cr3t-token"):
            assert secret not in line, line
    assert webhook_receiver.requests[0].headers["authorization"] == "Bearer s3cr3t-token"


def test_one_url_redactor() -> None:
    from anyprobe import _targets
    from anyprobe.masking import redact_url

    assert _targets.redact_url is redact_url
    assert redact_url("https://u:pw@h/x?y=@") == "https://u:***@h/x?y=@"
    assert redact_url("ssh://deploy@host:22") == "ssh://deploy@host:22"
    assert redact_url("https://u:pw@h:8443/T0/KEY?token=1", path=False) == "https://h:8443"
    assert redact_url("http://h:1?key=1#x", path=False) == "http://h:1"
    assert redact_url("not a url", path=False) == "not a url"


# -- -r NAME=DEST -------------------------------------------------------------------------


class Spool(anyprobe.Reporter[anyprobe.ReporterOptions]):
    """A reporter whose destination is not ``path``."""

    class Options(anyprobe.ReporterOptions):
        directory: str | None = None

    name = "spool"
    destination = "directory"


class ThisPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_reporters(self, register: Any) -> None:
        register(Chat)
        register(Spool)


def plugin_manager() -> PluginManager:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    manager.register(ThisPlugin(), "test-notifier-plugins")
    return manager


def test_dest_fills_the_field_the_reporter_declares() -> None:
    manager = plugin_manager()
    name, options, shown = parse_report(manager, "chat=https://chat.example.test/T0/KEY")
    assert (name, options) == ("chat", {"url": "https://chat.example.test/T0/KEY"})
    assert shown == "chat=https://chat.example.test/..."
    _, reporter = make_reporter(manager, name, options)
    assert reporter.options.url == "https://chat.example.test/T0/KEY"
    assert reporter.outputs() == []
    assert parse_report(manager, "spool=/var/spool/x")[1] == {"directory": "/var/spool/x"}
    assert parse_report(manager, "jsonl=out.jsonl")[1] == {"path": "out.jsonl"}
    assert parse_report(manager, "webhook=http://127.0.0.1/x")[1] == {"url": "http://127.0.0.1/x"}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_report_webhook_url_posts_there(
    backend: str, webhook_receiver: WebhookReceiver, closed_port: int
) -> None:
    proc = run_cli(
        "check", "--backend", backend, f"tcp://127.0.0.1:{closed_port}",
        "-r", f"webhook:url={webhook_receiver.url},mode=on_change", "-r", "jsonl=-",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    proc = run_cli(
        "check", "--backend", backend, f"tcp://127.0.0.1:{closed_port}",
        "-r", f"webhook={webhook_receiver.url}/T0/KEY",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "KEY" not in proc.stderr + proc.stdout
    on_change, batch = webhook_receiver.bodies()
    assert on_change["status"] == "critical" and on_change["previous_status"] == "ok"
    assert batch["summary"]["worst"] == "critical"
    assert webhook_receiver.requests[1].path == "/hook/T0/KEY"


@pytest.mark.parametrize(
    ("dest", "says"),
    [
        ("webhook=", "--report webhook=: DEST is empty (give its url, or leave out '=')"),
        (
            "webhook=ftp://127.0.0.1/T0/KEY",
            "--report webhook=ftp://127.0.0.1/...: field 'url': the URL must be http:// or https://",
        ),
        ("webhook=not-a-url", "--report webhook=not-a-url: field 'url': the URL must be http://"),
        ("webhook", "--report webhook: a URL is needed: url, url_env or -r webhook=URL"),
    ],
)
def test_a_bad_dest_is_one_line_and_exit_3(dest: str, says: str) -> None:
    proc = run_cli("check", "tcp://127.0.0.1:9", "-r", dest)
    assert proc.returncode == 3
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"anyprobe: error: {says}"), line
    assert "KEY" not in line


# -- anyprobe serve ---------------------------------------------------------------------------


async def test_a_serve_reload_flushes_and_state_spans_configs(
    manager: PluginManager, webhook_receiver: WebhookReceiver, closed_port: int, tmp_path: Path
) -> None:
    from anyprobe._serve import ProbeServer, bind, listening_url, load_serve_config, serve

    config = tmp_path / "serve.toml"
    config.write_text(
        f'[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{closed_port}"\ninterval = 0.05\n\n'
        f'[[reporter]]\ntype = "webhook"\nurl = "{webhook_receiver.url}"\nmode = "on_change"\n'
        f'window = 3600\nstate_file = "{tmp_path / "state.json"}"\n'
    )
    server = ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))
    sock = bind("127.0.0.1:0")
    url = listening_url(sock)
    shutdown = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(server, [sock], shutdown=shutdown, grace=2))
            async with httpx.AsyncClient(timeout=LIMIT) as client:
                for _ in range(600):  # bounded: until the check has run
                    if "db" in server.latest:
                        break
                    await anyio.sleep(0.05)
                assert webhook_receiver.requests == []  # the window holds the change
                assert (await client.post(f"{url}/-/reload")).status_code == 200
                # The reload ends the reporters' stream: the window is sent now.
                await wait_for_request(webhook_receiver)
                before = server.latest["db"]
                for _ in range(600):  # bounded: until the new config's check has run
                    if server.latest["db"] is not before:
                        break
                    await anyio.sleep(0.05)
                assert server.latest["db"] is not before
            shutdown.set()
    # The new config's reporter read the state: db was still critical, nothing more sent.
    (body,) = webhook_receiver.bodies()
    assert (body["name"], body["previous_status"], body["status"]) == ("db", "ok", "critical")
    assert json.loads((tmp_path / "state.json").read_text())["checks"] == {"db": "critical"}


# -- the guide's notifier ------------------------------------------------------------------


def guide_block(name: str) -> str:
    """The code of the block ``<!-- run: file=NAME -->`` in docs/writing-a-reporter.md."""
    page = (Path(__file__).parent.parent / "docs" / "writing-a-reporter.md").read_text()
    after = page.split(f"<!-- run: file={name} -->\n```python\n", 1)[1]
    return after.split("\n```\n", 1)[0] + "\n"


def test_the_guide_notifier_fits_in_40_lines_and_passes_its_tests(tmp_path: Path) -> None:
    """The page's whole notifier and its tests, run as a plugin author would
    (pytest with anyprobe's plugin, both backends, a loopback HTTP server);
    tests/test_docs.py runs the page's blocks in order too."""
    import subprocess
    import sys

    code = guide_block("chat.py")
    assert len(code.splitlines()) <= 40
    (tmp_path / "chat.py").write_text(code)
    (tmp_path / "test_chat.py").write_text(guide_block("test_chat.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "test_chat.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout
