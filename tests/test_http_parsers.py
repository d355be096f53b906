"""HTTP/1.1 framing and faults, with each parser (h11, httptools): the same
bytes from a server give the same verdict and the same summary.

A raw loopback server answers each request with the bytes a test scripts
for its path, so that the responses can be what no well-behaved server sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

import anyprobe
from anyprobe import PluginManager, Result, Status
from tests.garbage import cycles_left
from tests.servers.http import serve_raw

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("http_parser")]

#: A reply that ends with the server closing the connection.
CLOSE = b"<close>"


@asynccontextmanager
async def scripted(replies: Mapping[str, bytes]) -> AsyncIterator[tuple[int, list[int]]]:
    """A server answering ``GET /name`` with ``replies[name]`` (then closing the
    connection when the reply ends with :data:`CLOSE`), any number of requests
    a connection. Yields its port and a one-item list: connections accepted."""
    accepted = [0]

    async def handler(stream: ByteStream) -> None:
        accepted[0] += 1
        buffer = b""
        for _ in range(100):
            while b"\r\n\r\n" not in buffer:
                try:
                    buffer += await stream.receive()
                except anyio.EndOfStream:
                    return
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().lstrip("/").partition("?")[0]
            reply = replies[path]
            await stream.send(reply.removesuffix(CLOSE))
            if reply.endswith(CLOSE):
                return

    async with serve_raw(handler) as port:
        yield port, accepted


async def check(urls: list[str], manager: PluginManager, **options: Any) -> list[Result]:
    results = await anyprobe.check(
        urls, options=options, manager=manager, timeout=3.0, concurrency=1
    )
    assert len(results) == len(urls)
    return results


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


async def test_chunked_body_is_read_whole(manager: PluginManager) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with scripted({"chunked": chunked}) as (port, _):
        [result] = await check(
            [f"http://127.0.0.1:{port}/chunked"], manager, body_contains="hello world"
        )
    assert result.status is Status.OK, result.summary
    assert result.metrics["body_bytes"] == 11


async def test_chunked_body_over_the_cap_is_critical(manager: PluginManager) -> None:
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 8 + b"0\r\n\r\n"
    async with scripted({"big": big}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/big"], manager, max_body_bytes=2000)
    assert result.summary == "HTTP 200: body larger than max_body_bytes (2000 bytes)"


async def test_body_shorter_than_its_content_length_is_critical(manager: PluginManager) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this" + CLOSE
    async with scripted({"short": short}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/short"], manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "the server closed the connection before the end of the body"
    assert result.error is not None and result.error.phase == "transfer"


async def test_connection_closed_inside_the_head_is_critical(manager: PluginManager) -> None:
    async with scripted({"cut": b"HTTP/1.1 200 OK\r\nContent-" + CLOSE}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/cut"], manager)
    assert result.summary == "the server closed the connection without a response"


async def test_head_over_the_limit_is_critical(manager: PluginManager) -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 70_000 + b"\r\n"
    async with scripted({"huge": huge}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/huge"], manager)
    assert result.summary == "invalid HTTP response: Receive buffer too long"


async def test_garbage_is_described_in_the_same_words(manager: PluginManager) -> None:
    garbage = b"SSH-2.0-OpenSSH_9.6\r\n\r\n" + CLOSE
    async with scripted({"garbage": garbage}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/garbage"], manager)
    assert result.status is Status.CRITICAL
    assert result.summary == ("invalid HTTP response: illegal status line: b'SSH-2.0-OpenSSH_9.6'")
    assert result.error is not None and result.error.type == "RemoteProtocolError"


async def test_informational_heads_are_skipped(manager: PluginManager) -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    async with scripted({"early": early}) as (port, _):
        [result] = await check([f"http://127.0.0.1:{port}/early"], manager, body_contains="ok")
    assert result.status is Status.OK, result.summary
    assert result.metrics["http_status"] == 200


async def test_head_response_has_no_body_whatever_its_length(manager: PluginManager) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    async with scripted({"head": head}) as (port, accepted):
        urls = [f"http://127.0.0.1:{port}/head?n={i}" for i in range(3)]
        results = await check(urls, manager, method="HEAD", reuse_connections=True)
    assert [r.status for r in results] == [Status.OK] * 3, [r.summary for r in results]
    assert [r.metrics["body_bytes"] for r in results] == [0, 0, 0]
    assert accepted[0] == 1


async def test_http_1_0_body_ends_with_the_connection(manager: PluginManager) -> None:
    old = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0" + CLOSE
    async with scripted({"old": old}) as (port, accepted):
        urls = [f"http://127.0.0.1:{port}/old?n={i}" for i in range(2)]
        results = await check(urls, manager, body_contains="from 1.0", reuse_connections=True)
    assert [r.status for r in results] == [Status.OK] * 2, [r.summary for r in results]
    assert results[0].metrics["http_version"] == "1.0"
    assert accepted[0] == 2


async def test_http_1_0_keep_alive_connection_is_not_reused(manager: PluginManager) -> None:
    old = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nok\n"
    async with scripted({"old": old}) as (port, accepted):
        urls = [f"http://127.0.0.1:{port}/old?n={i}" for i in range(2)]
        results = await check(urls, manager, reuse_connections=True)
    assert [r.status for r in results] == [Status.OK] * 2, [r.summary for r in results]
    assert accepted[0] == 2


async def test_keep_alive_connection_is_reused(manager: PluginManager) -> None:
    async with scripted({"ok": OK}) as (port, accepted):
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(5)]
        results = await check(urls, manager, reuse_connections=True)
    assert [r.status for r in results] == [Status.OK] * 5, [r.summary for r in results]
    assert accepted[0] == 1


async def test_bytes_after_the_response_keep_the_connection_from_reuse(
    manager: PluginManager,
) -> None:
    extra = OK + b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"
    async with scripted({"extra": extra, "ok": OK}) as (port, accepted):
        urls = [f"http://127.0.0.1:{port}/extra", f"http://127.0.0.1:{port}/ok"]
        results = await check(urls, manager, reuse_connections=True)
    assert [r.status for r in results] == [Status.OK] * 2, [r.summary for r in results]
    assert results[1].metrics["connection_reused"] is False
    assert accepted[0] == 2


async def test_a_request_h11_refuses_is_refused_alike(manager: PluginManager) -> None:
    async with scripted({"ok": OK}) as (port, _):
        [result] = await check(
            [f"http://127.0.0.1:{port}/ok"], manager, headers={"X-Padded": "value "}
        )
    assert result.status is Status.UNKNOWN
    assert result.summary == "cannot send the request: Illegal header value b'value '"


async def test_a_body_is_sent_with_its_length(manager: PluginManager) -> None:
    seen: list[bytes] = []

    async def handler(stream: ByteStream) -> None:
        data = b""
        while not data.endswith(b"hello"):
            data += await stream.receive()
        seen.append(data)
        await stream.send(OK)

    async with serve_raw(handler) as port:
        [result] = await check(
            [f"http://127.0.0.1:{port}/post"], manager, method="POST", body="hello"
        )
    assert result.status is Status.OK, result.summary
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /post HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 5" in head
    assert body == b"hello"


#: The objects of one HTTP/1.1 exchange (httptools' parser holds its handler's methods).
EXCHANGE_TYPES = {"LlhttpParser", "HttpResponseParser", "H11Parser", "HttpRequest", "Response"}


async def test_a_check_leaves_no_reference_cycle(manager: PluginManager) -> None:
    """Whatever way an exchange ends (a body read whole, a HEAD answer, a body
    past the cap, garbage, the server closing early, 1xx heads first), it is
    freed with its check: a run of thousands never waits for the collector."""
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    replies = {
        "ok": OK,
        "head": b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        "big": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 8,
        "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n" + CLOSE,
        "short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this" + CLOSE,
        "early": b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
    }
    async with scripted(replies) as (port, _):
        base = f"http://127.0.0.1:{port}"
        await check([f"{base}/ok"], manager)  # imports and caches before counting
        with cycles_left() as left:
            for _ in range(3):
                plain = ["ok", "garbage", "short", "early"]
                results = await check([f"{base}/{name}" for name in plain], manager)
                results += await check([f"{base}/head"], manager, method="HEAD")
                results += await check([f"{base}/big"], manager, max_body_bytes=2000)
    statuses = [r.status for r in results]
    assert statuses.count(Status.OK) == 3, [r.summary for r in results]
    assert {name: n for name, n in left.items() if name in EXCHANGE_TYPES} == {}
