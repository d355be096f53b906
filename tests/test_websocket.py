"""The WebSocket probe against a real WebSocket server on loopback, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status, TargetError
from tests.cli import assert_one_clear_line
from tests.servers.banner import TlsCa
from tests.servers.websocket import HUGE

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


async def test_echo_is_ok(anyio_backend: str, manager: PluginManager, ws_server: int) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, send="hello there", expect="there")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"upgraded at 127.0.0.1:{ws_server} in ")
    assert result.summary.endswith("got 'there' in 11 bytes")
    assert list(result.phases) == ["resolve", "connect", "upgrade", "message", "close"]
    assert result.metrics["http_status"] == 101
    assert result.metrics["reply_bytes"] == 11
    assert result.metrics["close_code"] == 1000


async def test_expect_regex_matches_the_reply(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, send="status: UP", expect_regex=r"^status: (UP|OK)$")
    assert result.status is Status.OK, result.summary
    assert "got /^status: (UP|OK)$/ in 10 bytes" in result.summary


async def test_a_wrong_reply_is_critical_and_quoted(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, send="PANG", expect="PONG")
    assert result.status is Status.CRITICAL
    assert result.summary == "expected 'PONG' in the reply; got 'PANG' (4 bytes)"
    assert result.error is not None and result.error.phase == "message"


async def test_a_refused_upgrade_is_critical_with_its_status(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    result = await check_one(manager, f"ws://127.0.0.1:{ws_server}/forbidden")
    assert result.status is Status.CRITICAL
    assert result.summary == "expected HTTP 101 (the upgrade), got HTTP 403"
    assert result.metrics["http_status"] == 403
    assert result.error is not None and result.error.phase == "upgrade"


async def test_a_refused_port_is_critical(
    anyio_backend: str, manager: PluginManager, closed_port: int
) -> None:
    result = await check_one(manager, f"ws://127.0.0.1:{closed_port}/")
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_an_unanswered_upgrade_times_out_in_phase_upgrade(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    result = await check_one(manager, f"ws://127.0.0.1:{ws_server}/silent", seconds=0.5)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.5 s during upgrade"
    assert result.error is not None and result.error.phase == "upgrade"


async def test_garbage_instead_of_http_is_critical(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    result = await check_one(manager, f"ws://127.0.0.1:{ws_server}/garbage")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("not a WebSocket server (Bad HTTP message): got '")
    assert "garbage, not HTTP" in result.summary
    assert result.error is not None and result.error.phase == "upgrade"


async def test_a_reply_over_the_budget_is_critical(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, send="huge", max_message_bytes=1000)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("the reply is larger than max_message_bytes (1000): ")
    assert 1000 < result.metrics["reply_bytes"] <= HUGE
    assert result.error is not None and result.error.phase == "message"
    whole = await check_one(manager, url, send="huge", max_message_bytes=HUGE)
    assert whole.status is Status.OK, whole.summary
    assert whole.metrics["reply_bytes"] == HUGE


async def test_a_server_dropping_without_a_close_frame_is_a_warning(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    result = await check_one(manager, f"ws://127.0.0.1:{ws_server}/drop", send="hi", expect="hi")
    assert result.status is Status.WARNING
    assert result.summary.endswith(
        "got 'hi' in 2 bytes; the server closed the connection without a close frame"
    )
    assert result.metrics["close_code"] == 1006


async def test_a_server_closing_before_the_reply_is_critical_with_its_code(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/closing"
    result = await check_one(manager, url, send="hello", expect="pong")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "the server closed the WebSocket (1008 policy violation: 'no token') "
        "before a message with 'pong'"
    )
    assert result.metrics["close_code"] == 1008
    assert result.error is not None and result.error.phase == "message"


async def test_the_chosen_subprotocol_is_reported(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, subprotocols=["superchat", "chat"])
    assert result.status is Status.OK, result.summary
    assert "; subprotocol chat" in result.summary
    assert result.metrics["subprotocol"] == "chat"


async def test_no_subprotocol_chosen_is_critical_unless_optional(
    anyio_backend: str, manager: PluginManager, ws_server: int
) -> None:
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(manager, url, subprotocols=["mqtt", "stomp"])
    assert result.status is Status.CRITICAL
    assert result.summary == "offered subprotocols mqtt, stomp; the server chose none"
    optional = await check_one(manager, url, subprotocols=["mqtt"], require_subprotocol=False)
    assert optional.status is Status.OK, optional.summary
    assert "subprotocol" not in optional.metrics


async def test_wss_with_a_trusted_certificate(
    anyio_backend: str, manager: PluginManager, wss_server: int, tls_ca: TlsCa
) -> None:
    url = f"wss://localhost:{wss_server}/echo"
    result = await check_one(manager, url, ca_file=str(tls_ca.ca_file), send="x", expect="x")
    assert result.status is Status.OK, result.summary
    assert "tls" in result.phases
    assert "certificate expires in " in result.summary
    assert result.metrics["cert_expiry_days"] > 80


async def test_wss_with_an_untrusted_certificate_is_critical(
    anyio_backend: str, manager: PluginManager, wss_server: int
) -> None:
    result = await check_one(manager, f"wss://localhost:{wss_server}/echo")
    assert result.status is Status.CRITICAL
    assert "certificate" in result.summary
    assert result.error is not None and result.error.phase == "tls"


async def test_a_secret_header_echoed_back_is_masked(
    anyio_backend: str,
    manager: PluginManager,
    ws_server: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WS_TOKEN", "Bearer s3cret-token-value")
    url = f"ws://127.0.0.1:{ws_server}/echo"
    result = await check_one(
        manager,
        url,
        explain=True,
        headers={"X-Api-Key": "plain-key-12345", "Origin": "http://localhost"},
        header_env={"Authorization": "WS_TOKEN"},
        send="headers",
        expect="never there",
    )
    assert result.status is Status.CRITICAL
    shown = result.summary + "".join(entry.message for entry in result.trace)
    assert "s3cret" not in shown and "plain-key" not in shown
    assert result.summary.startswith(
        "expected 'never there' in the reply; got 'x-api-key: ***\\norigin: http://localhost"
    )
    assert "authorization: ***" in shown


def test_bad_options_and_urls_are_refused(manager: PluginManager) -> None:
    with pytest.raises(OptionsError, match="set by the WebSocket upgrade itself"):
        anyprobe.prepare(["ws://h/"], options={"headers": {"Upgrade": "x"}}, manager=manager)
    with pytest.raises(OptionsError, match="set expect or expect_regex, not both"):
        anyprobe.prepare(["ws://h/"], options={"expect": "a", "expect_regex": "a"}, manager=manager)
    with pytest.raises(TargetError, match="fragment"):
        anyprobe.prepare(["ws://h/path#x"], manager=manager)
    [target] = anyprobe.prepare(["wss://h/feed?x=1"], manager=manager).targets
    assert target.port == 443


#: The CLI, run with wsproto made impossible to import.
WITHOUT_WSPROTO = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "wsproto":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
from anyprobe._cli import main
sys.argv[0] = "anyprobe"
main()
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_without_wsproto_a_run_is_one_line_naming_the_extra(backend: str, closed_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_WSPROTO, "check", "--backend", backend,
         f"ws://127.0.0.1:{closed_port}/"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120,
    )  # fmt: skip
    assert_one_clear_line(
        proc, "the websocket probe (ws://, wss://) needs wsproto", "anyprobe[websocket]"
    )


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins._demo_ws import demo_services

    async with demo_services() as checks:
        assert len(checks) == 2
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)
