"""The websocket probe's services for ``anyprobe demo``: a WebSocket echo
server, and one that refuses the upgrade with HTTP 403. Registered by
:mod:`anyprobe.plugins.websocket`'s ``anyprobe_demo_services`` hook when
wsproto is installed; imported only when the demo runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import anyio.abc

import anyprobe

#: Most reads one demo connection serves.
MAX_READS = 100


async def _serve(stream: Any, refuse: bool) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        RejectConnection,
        Request,
        TextMessage,
    )

    ws = WSConnection(ConnectionType.SERVER)
    async with stream:
        with suppress(Exception):  # a client that gives up ends one connection
            for _ in range(MAX_READS):
                ws.receive_data(await stream.receive())
                for event in ws.events():
                    if isinstance(event, Request):
                        answer = RejectConnection(status_code=403) if refuse else AcceptConnection()
                        await stream.send(ws.send(answer))
                        if refuse:
                            return
                    elif isinstance(event, TextMessage):
                        await stream.send(ws.send(Message(data=event.data)))
                    elif isinstance(event, CloseConnection):
                        await stream.send(ws.send(event.response()))
                        return


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A WebSocket echo server and a server that refuses the upgrade."""
    async with anyio.create_task_group() as tg:
        ports = []
        for refuse in (False, True):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            ports.append(listener.extra(anyio.abc.SocketAttribute.local_port))

            async def handle(stream: Any, refuse: bool = refuse) -> None:
                await _serve(stream, refuse)

            tg.start_soon(listener.serve, handle)
        yield [
            anyprobe.DemoCheck(
                "websocket: echo",
                f"ws://127.0.0.1:{ports[0]}/echo",
                anyprobe.Status.OK,
                options={"send": "ping", "expect": "ping"},
            ),
            anyprobe.DemoCheck(
                "websocket: upgrade refused",
                f"ws://127.0.0.1:{ports[1]}/",
                anyprobe.Status.CRITICAL,
            ),
        ]
        tg.cancel_scope.cancel()
