"""The DNS probe in one process that runs asyncio, then trio, then asyncio again.

Not parametrised over ``anyio_backend``: the point is switching backends
within one test, which is what a test suite (or an embedding program) does.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Result, Status
from tests.servers.banner import TlsCa
from tests.servers.dns import DnsServer


def test_dns_probe_follows_the_running_backend(
    manager: PluginManager, dns_server: DnsServer
) -> None:
    # dnspython caches the first backend it detects for the whole process;
    # the probe passes the running one on every call instead.
    target = f"dns://{dns_server.address}/www.example.test"

    async def run() -> list[Result]:
        return await anyprobe.check([target], manager=manager)

    for backend in ("asyncio", "trio", "asyncio", "trio"):
        [result] = anyio.run(run, backend=backend)
        assert result.status is Status.OK, (backend, result.summary)
    assert dns_server.queries == {"udp": 4}


@pytest.mark.parametrize("transport", ["tls", "https"])
def test_encrypted_transports_follow_the_running_backend(
    manager: PluginManager,
    tls_ca: TlsCa,
    encrypted_dns_server: Callable[..., DnsServer],
    transport: str,
) -> None:
    server = encrypted_dns_server(transport)
    target = f"dns://{server.address}/www.example.test"
    options = {"transport": transport, "ca_file": str(tls_ca.ca_file)}

    async def run() -> list[Result]:
        return await anyprobe.check([target], options=options, manager=manager)

    for backend in ("asyncio", "trio", "asyncio", "trio"):
        [result] = anyio.run(run, backend=backend)
        assert result.status is Status.OK, (backend, result.summary)
    assert server.queries == {transport: 4}
