"""One rule for list options, in core: a single value where a list is expected is a
list of one, for every probe and reporter, built-in or a plugin's own."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

import anyio
import pytest
from pydantic import Field

import anyprobe
from anyprobe import PluginManager, Result, Status
from tests.cli import anyprobe as run_cli
from tests.servers.dns import DnsServer
from tests.servers.serve import WebTarget

pytestmark = pytest.mark.anyio


async def check_one(manager: PluginManager, url: str, **options: Any) -> Result:
    [result] = await anyprobe.check([url], options=options, manager=manager, timeout=5)
    return result


async def test_dns_expect_answers_takes_one_address(
    anyio_backend: str, manager: PluginManager, dns_server: DnsServer
) -> None:
    url = f"dns://{dns_server.address}/www.example.test"
    result = await check_one(manager, url, expect_answers="127.0.0.10")
    assert result.status is Status.OK, result.summary
    missing = await check_one(manager, url, expect_answers="127.0.0.99")
    assert missing.status is Status.CRITICAL
    assert "127.0.0.99" in missing.summary


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_dns_expect_answers_from_one_set_value(dns_server: DnsServer, backend: str) -> None:
    url = f"dns://{dns_server.address}/www.example.test"
    ok = run_cli("check", "--backend", backend, url, "--set", "expect_answers=127.0.0.10")
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    wrong = run_cli("check", "--backend", backend, url, "--set", "expect_any_answer=127.0.0.99")
    assert wrong.returncode == 2, wrong.stderr


async def test_http_list_options_take_one_value(
    anyio_backend: str, manager: PluginManager, web_target: WebTarget
) -> None:
    result = await check_one(
        manager, web_target.url, expect_status=200, body_contains="UP", json_assertions=[]
    )
    assert result.status is Status.OK, result.summary
    wrong = await check_one(manager, web_target.url, expect_status="3xx")
    assert wrong.status is Status.CRITICAL


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http_list_options_from_one_set_value(web_target: WebTarget, backend: str) -> None:
    proc = run_cli(
        "check", "--backend", backend, web_target.url,
        "--set", "expect_status=200", "--set", "body_contains=UP",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


class PortsOptions(anyprobe.ProbeOptions):
    ports: list[int] = Field(default_factory=list, description="Ports that must accept.")
    names: tuple[str, ...] | None = Field(default=None, description="Labels to report.")
    tags: frozenset[str] = Field(default=frozenset(), description="Tags.")
    note: str = Field(default="", description="Text, not a list: never wrapped.")


class PortsProbe(anyprobe.Probe[PortsOptions]):
    """Connects to every port of ``ports`` on the target's host."""

    name = "ports"
    schemes = ("ports",)
    Options = PortsOptions

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: PortsOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        for port in options.ports:
            stream = await anyio.connect_tcp(target.host, port)
            await stream.aclose()
        return anyprobe.Outcome.ok(
            f"ports {options.ports} names {options.names} tags {sorted(options.tags)}"
        )


class PortsPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(PortsProbe)


async def test_a_plugins_own_list_options_take_one_value(
    anyio_backend: str, manager: PluginManager, web_target: WebTarget
) -> None:
    manager.register(PortsPlugin(), name="ports-plugin")
    result = await check_one(
        manager, "ports://127.0.0.1", ports=web_target.port, names="web", tags="a", note="b"
    )
    assert result.status is Status.OK, result.summary
    assert result.summary == f"ports [{web_target.port}] names ('web',) tags ['a']"


def test_a_reporters_list_option_takes_one_value() -> None:
    class ColumnsOptions(anyprobe.ReporterOptions):
        columns: list[str] = Field(default_factory=list, description="Columns.")

    assert ColumnsOptions.model_validate({"columns": "name"}).columns == ["name"]
    assert ColumnsOptions.model_validate({"columns": ["a", "b"]}).columns == ["a", "b"]
    assert ColumnsOptions.model_validate({"path": "x"}).path == "x"
