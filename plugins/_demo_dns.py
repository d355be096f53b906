"""The DNS probe's rows of ``anyprobe demo``: a tiny authoritative server for
``demo.test`` on loopback UDP, and the questions asked of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

import anyprobe


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A tiny authoritative server for ``demo.test`` on loopback UDP, and three rows."""
    async with _serve_demo_zone() as port:
        server = f"127.0.0.1:{port}"
        yield [
            anyprobe.DemoCheck(
                "dns: A record",
                f"dns://{server}/www.demo.test?type=A",
                anyprobe.Status.OK,
                options={"expect_answers": ["127.0.0.1"]},
            ),
            anyprobe.DemoCheck(
                "dns: missing name",
                f"dns://{server}/missing.demo.test",
                anyprobe.Status.CRITICAL,
            ),
            anyprobe.DemoCheck(
                "dns: wrong MX",
                f"dns://{server}/demo.test?type=MX",
                anyprobe.Status.CRITICAL,
                options={"expect_answers": ["mail.demo.test"]},
            ),
        ]


_DEMO_ZONE = {
    ("www.demo.test.", "A"): "127.0.0.1",
    ("demo.test.", "MX"): "10 mx2.demo.test.",
}


@asynccontextmanager
async def _serve_demo_zone() -> AsyncIterator[int]:
    """Serve :data:`_DEMO_ZONE` over UDP on an ephemeral port until the block ends."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.question:
            question = query.question[0]
            name = question.name.to_text().lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            rdata = _DEMO_ZONE.get((name, rdtype))
            if rdata is not None:
                response.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, rdata))
            elif not any(key[0] == name for key in _DEMO_ZONE):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    async def serve(udp: anyio.abc.UDPSocket) -> None:
        async for wire, peer in udp:
            reply = answer(wire)
            if reply is not None:
                await udp.sendto(reply, *peer)

    async with (
        await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0) as udp,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(serve, udp)
        yield udp.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()
