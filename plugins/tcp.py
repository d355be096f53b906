"""The TCP probe: ``tcp://HOST:PORT`` connects, timing resolve and connect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import Field

import anyprobe
from anyprobe.net import IpFamily, connect_tcp, resolve


class TcpOptions(anyprobe.ProbeOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )


class TcpProbe(anyprobe.Probe[TcpOptions]):
    """Open a TCP connection; ok when the port accepts it."""

    name = "tcp"
    schemes = ("tcp",)
    Options = TcpOptions
    description = "TCP connect, like check_tcp and blackbox's tcp prober."

    async def check(
        self, target: anyprobe.Target, options: TcpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        with ctx.phase("resolve"):
            addresses = await resolve(target.host, target.port, options.ip_family)
        ctx.trace(f"resolved {target.host} to {', '.join(addresses)}")
        with ctx.phase("connect"):
            stream, address = await connect_tcp(addresses, target.port)
        ctx.trace(f"connected to {address} port {target.port}")
        await stream.aclose()
        took = ctx.phases["connect"] * 1000
        return anyprobe.Outcome.ok(
            f"connected to {address}:{target.port} in {took:.1f} ms",
            metrics={"address": address, "port": target.port},
        )


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A port that accepts connections and one that refuses them."""

    async def accept_and_close(stream: Any) -> None:
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    open_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    closed_port = await _unused_port()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, accept_and_close)
        yield [
            anyprobe.DemoCheck(
                "tcp: listening port", f"tcp://127.0.0.1:{open_port}", anyprobe.Status.OK
            ),
            anyprobe.DemoCheck(
                "tcp: closed port", f"tcp://127.0.0.1:{closed_port}", anyprobe.Status.CRITICAL
            ),
        ]
        tg.cancel_scope.cancel()


async def _unused_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(TcpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
