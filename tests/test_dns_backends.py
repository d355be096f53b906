"""The DNS probe in one process that runs asyncio, then trio, then asyncio again.

Not parametrised over ``anyio_backend``: the point is switching backends
within one test, which is what a test suite (or an embedding program) does.
"""

from __future__ import annotations

import anyio

import anyprobe
from anyprobe import PluginManager, Result, Status
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
