"""The HTTP probe's ``reuse_connections`` option against keep-alive loopback
servers, on asyncio and trio.

The servers count the connections they accept and the ones still open, so
each test asserts what happened on the wire: how many connections the checks
used, and that none is left open when the run is over.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import ByteStream

import anyprobe
from anyprobe import PluginManager, Result, Status
from anyprobe._api import prepare
from anyprobe._http_server import Request, serve_http
from anyprobe._run import Run
from tests.servers.http import cert_files, serve_h2, serve_proxy, server_context

# Every test runs with each HTTP/1.1 parser (h11, httptools) on each backend.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("http_parser")]

REUSE = {"reuse_connections": True}


@dataclass
class Wire:
    """What a server (or several sharing one Wire) saw of its connections."""

    accepted: int = 0
    open: int = 0
    most_open: int = 0
    requests: list[Request] = field(default_factory=list)
    #: Requests that arrived on a connection that had served one before.
    reused_by_client: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def connection(self, opened: bool) -> None:
        """A connection was accepted (``opened``) or has ended."""
        if opened:
            self.accepted += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        else:
            self.open -= 1
        self.notify()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait (at most 5 s) until ``condition()`` holds."""
        with anyio.fail_after(5):
            while not condition():
                await self.changed.wait()

    async def all_closed(self) -> None:
        """Wait until the client has closed every connection."""
        await self.wait_for(lambda: self.open == 0)


async def answer(stream: ByteStream, status: int, body: bytes, *extra: str) -> None:
    head = [f"HTTP/1.1 {status} Status", f"Content-Length: {len(body)}", *extra]
    await stream.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)


async def keep_alive_routes(request: Request, stream: ByteStream) -> bool:
    """Answer ``request``; False when the server then closes the connection."""
    path = request.path
    if path == "/ok":
        await answer(stream, 200, b"ok\n")
    elif path == "/close":
        await answer(stream, 200, b"closing\n", "Connection: close")
        return False
    elif path == "/quietly-close":
        # Looks reusable to the client, but the server closes it right after,
        # as a server does with a connection idle past its keep-alive timeout.
        await answer(stream, 200, b"ok\n")
        return False
    elif path.startswith("/redirect/"):
        left = int(path.rsplit("/", 1)[1])
        if left:
            await answer(stream, 302, b"", f"Location: /redirect/{left - 1}")
        else:
            await answer(stream, 200, b"end\n")
    elif path == "/big":
        await answer(stream, 200, b"x" * 4096)
    elif path == "/silent":
        # Never answers: waits until the client gives up and closes.
        with suppress(anyio.EndOfStream):
            while True:
                await stream.receive()
    else:
        await answer(stream, 404, b"not found\n")
    return True


@asynccontextmanager
async def serve_keep_alive(
    wire: Wire,
    *,
    ssl_context: ssl.SSLContext | None = None,
    routes: Callable[[Request, ByteStream], Awaitable[bool]] = keep_alive_routes,
) -> AsyncIterator[int]:
    """An HTTP/1.1 server answering any number of requests per connection."""

    async def handler(request: Request, stream: ByteStream) -> bool:
        wire.requests.append(request)
        wire.reused_by_client += request.sequence > 0
        wire.notify()
        keep = await routes(request, stream)
        return keep and request.headers.get("connection", "").lower() != "close"

    async with serve_http(handler, ssl_context=ssl_context, on_connection=wire.connection) as port:
        yield port


async def run(
    urls: list[str],
    manager: PluginManager,
    *,
    concurrency: int = 1,
    timeout: float = 5.0,  # noqa: ASYNC109 - each check's timeout, given to anyprobe
    explain: bool = False,
    **options: Any,
) -> list[Result]:
    results = await anyprobe.check(
        urls,
        options=options,
        manager=manager,
        concurrency=concurrency,
        timeout=timeout,
        explain=explain,
    )
    assert len(results) == len(urls)
    return results


def trace_of(result: Result) -> list[str]:
    return [event.message for event in result.trace]


# -- reuse, and not by default ---------------------------------------------------------


async def test_reuse_is_off_by_default(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        results = await run([f"http://127.0.0.1:{port}/ok?n={i}" for i in range(5)], manager)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 5
    assert wire.accepted == 5
    assert wire.reused_by_client == 0
    assert all(r.headers.get("connection") == "close" for r in wire.requests)
    assert all("connection_reused" not in r.metrics for r in results)


async def test_checks_of_one_host_share_one_connection(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(20)]
        results = await run(urls, manager, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 20, [r.summary for r in results]
    assert wire.accepted == 1
    assert wire.reused_by_client == 19
    assert all("connection" not in r.headers for r in wire.requests)
    first, *later = results
    assert first.metrics["connection_reused"] is False
    assert {"resolve", "connect"} <= set(first.phases)
    assert all(r.metrics["connection_reused"] is True for r in later)
    assert all(set(r.phases) == {"first_byte", "transfer"} for r in later)
    assert all(r.metrics["address"] == "127.0.0.1" for r in results)


async def test_concurrent_checks_open_at_most_concurrency_connections(
    manager: PluginManager,
) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(60)]
        results = await run(urls, manager, concurrency=4, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 60
    assert wire.accepted <= 4
    assert wire.most_open <= 4
    assert sum(r.metrics["connection_reused"] for r in results) == 60 - wire.accepted


async def test_idle_connections_never_exceed_the_concurrency(manager: PluginManager) -> None:
    # One check at a time over three servers: the pool keeps one idle
    # connection, so keeping one for a server closes the one kept for another.
    wire = Wire()
    async with (
        serve_keep_alive(wire) as first,
        serve_keep_alive(wire) as second,
        serve_keep_alive(wire) as third,
    ):
        ports = (first, second, third)
        urls = [f"http://127.0.0.1:{ports[i % 3]}/ok?n={i}" for i in range(9)]
        results = await run(urls, manager, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 9
    assert wire.accepted == 9
    assert wire.most_open == 2  # the idle one and the one in use


async def test_redirect_hops_on_one_host_reuse_the_connection(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        (result,) = await run([f"http://127.0.0.1:{port}/redirect/3"], manager, **REUSE)
        await wire.all_closed()
    assert result.status is Status.OK, result.summary
    assert result.metrics["redirects"] == 3
    assert wire.accepted == 1
    assert wire.reused_by_client == 3


async def test_https_reuse_keeps_the_certificate_of_the_handshake(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    wire = Wire()
    context = server_context(http_ca, "localhost")
    async with serve_keep_alive(wire, ssl_context=context) as port:
        urls = [f"https://localhost:{port}/ok?n={i}" for i in range(5)]
        results = await run(urls, manager, ca_file=http_ca_file, ip_family="ipv4", **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 5, [r.summary for r in results]
    assert wire.accepted == 1
    first, *later = results
    assert "tls" in first.phases
    assert first.metrics["connection_reused"] is False
    for result in later:
        assert result.metrics["connection_reused"] is True
        assert "tls" not in result.phases
        assert result.metrics["cert_expiry_days"] == first.metrics["cert_expiry_days"]
        assert result.details["tls"]["certificates"] == first.details["tls"]["certificates"]


async def test_different_tls_options_do_not_share_a_connection(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    wire = Wire()
    context = server_context(http_ca, "localhost")
    async with serve_keep_alive(wire, ssl_context=context) as port:
        url = f"https://127.0.0.1:{port}/ok"
        _, named = prepare(
            [url],
            manager=manager,
            options={"ca_file": http_ca_file, "server_name": "localhost", **REUSE},
        )
        _, unverified = prepare([url], manager=manager, options={"verify": False, **REUSE})
        targets = [*named, *named, *unverified, *unverified]
        results = await anyprobe.check(targets, manager=manager, concurrency=1)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 4, [r.summary for r in results]
    assert [r.metrics["connection_reused"] for r in results] == [False, True, False, True]
    assert wire.accepted == 2


# -- what ends a connection --------------------------------------------------------------


async def test_server_closing_an_idle_connection_is_not_a_failure(
    manager: PluginManager,
) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/quietly-close?n={i}" for i in range(6)]
        results = await run(urls, manager, explain=True, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 6, [r.summary for r in results]
    assert [r.attempts for r in results] == [1] * 6
    assert wire.accepted == 6
    assert len(wire.requests) == 6
    for result in results[1:]:
        assert result.metrics["connection_reused"] is False
        assert any(
            line.startswith("the server had closed the idle connection")
            and line.endswith("retrying on a fresh connection")
            for line in trace_of(result)
        ), trace_of(result)


async def test_server_closing_an_idle_tls_connection_is_not_a_failure(
    manager: PluginManager, http_ca: trustme.CA, http_ca_file: str
) -> None:
    wire = Wire()
    context = server_context(http_ca, "localhost")
    async with serve_keep_alive(wire, ssl_context=context) as port:
        urls = [f"https://localhost:{port}/quietly-close?n={i}" for i in range(4)]
        results = await run(urls, manager, ca_file=http_ca_file, ip_family="ipv4", **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 4, [r.summary for r in results]
    assert wire.accepted == 4


async def test_connection_close_from_the_server_is_honoured(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/close?n={i}" for i in range(4)]
        results = await run(urls, manager, explain=True, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 4
    assert wire.accepted == 4
    assert wire.reused_by_client == 0
    assert all(r.metrics["connection_reused"] is False for r in results)
    assert "connection closed: the server asked to close it" in trace_of(results[0])


async def test_connection_close_in_the_request_is_honoured(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(3)]
        results = await run(urls, manager, headers={"Connection": "close"}, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 3
    assert wire.accepted == 3


async def test_body_over_the_cap_closes_the_connection(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        big = f"http://127.0.0.1:{port}/big"
        ok = f"http://127.0.0.1:{port}/ok"
        results = await run([big, ok], manager, max_body_bytes=1024, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.CRITICAL, Status.OK]
    assert wire.accepted == 2
    assert results[1].metrics["connection_reused"] is False


async def test_a_timed_out_check_does_not_give_its_connection_back(
    manager: PluginManager,
) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [
            f"http://127.0.0.1:{port}/ok",
            f"http://127.0.0.1:{port}/silent",
            f"http://127.0.0.1:{port}/ok?after",
        ]
        results = await run(urls, manager, timeout=0.5, **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK, Status.CRITICAL, Status.OK]
    assert results[1].summary == "timed out after 0.5 s during first_byte"
    assert results[1].metrics["connection_reused"] is True
    # The silent request's connection was closed; the next check opened its own.
    assert wire.accepted == 2
    assert results[2].metrics["connection_reused"] is False


async def test_a_cancelled_run_leaves_no_connection_open(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(4)]
        urls.append(f"http://127.0.0.1:{port}/silent")
        seen: list[Result] = []
        with anyio.CancelScope() as scope:
            async with anyprobe.stream(
                urls, manager=manager, concurrency=2, options=REUSE, timeout=30
            ) as results:
                async for result in results:
                    seen.append(result)
                    if len(seen) == 4:
                        # Wait until the silent request is on the wire, then cancel.
                        await wire.wait_for(lambda: any(r.path == "/silent" for r in wire.requests))
                        scope.cancel()
        assert scope.cancelled_caught
        await wire.all_closed()
    assert [r.status for r in seen] == [Status.OK] * 4
    assert wire.open == 0


async def test_the_pool_is_closed_when_the_run_ends(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as first, serve_keep_alive(wire) as second:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(8) for port in (first, second)]
        _, targets = prepare(urls, manager=manager, options=REUSE)
        checks = Run(targets, manager, concurrency=3)
        async with checks.results() as stream, anyio.create_task_group() as tg:
            tg.start_soon(checks.execute)
            results = [result async for result in stream]
        # The run (and so its pool) is still referenced here: the server sees
        # every connection closed only because the run closed its pool.
        await wire.all_closed()
        del checks
    assert [r.status for r in results] == [Status.OK] * 16
    assert wire.reused_by_client > 0
    assert wire.most_open <= 6  # three in use, three idle at most


# -- where reuse does not apply --------------------------------------------------------


async def test_http2_connections_are_not_reused(
    manager: PluginManager,
    anyio_backend: str,
    http_ca: trustme.CA,
    http_ca_file: str,
    tmp_path: Path,
) -> None:
    certfile, keyfile = cert_files(http_ca, tmp_path)
    async with serve_h2(certfile, keyfile, anyio_backend) as port:
        urls = [f"https://localhost:{port}/?n={i}" for i in range(2)]
        results = await run(
            urls, manager, ca_file=http_ca_file, http2=True, ip_family="ipv4", **REUSE
        )
    assert [r.status for r in results] == [Status.OK] * 2, [r.summary for r in results]
    assert [r.metrics["http_version"] for r in results] == ["2", "2"]
    assert [r.metrics["connection_reused"] for r in results] == [False, False]


async def test_requests_through_a_proxy_are_not_reused(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port, serve_proxy() as (proxy_port, seen):
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(3)]
        results = await run(urls, manager, proxy=f"http://127.0.0.1:{proxy_port}", **REUSE)
        await wire.all_closed()
    assert [r.status for r in results] == [Status.OK] * 3, [r.summary for r in results]
    assert len(seen) == 3
    assert [r.metrics["connection_reused"] for r in results] == [False] * 3
    assert all(r.headers.get("connection") == "close" for r in wire.requests)


# -- explain -----------------------------------------------------------------------------


async def test_trace_says_whether_the_connection_was_reused(manager: PluginManager) -> None:
    wire = Wire()
    async with serve_keep_alive(wire) as port:
        urls = [f"http://127.0.0.1:{port}/ok?n={i}" for i in range(2)]
        first, second = await run(urls, manager, explain=True, **REUSE)
        await wire.all_closed()
    assert f"connected to 127.0.0.1 port {port}" in trace_of(first)
    assert "connection kept open for the next check" in trace_of(first)
    assert (
        f"reusing the connection to 127.0.0.1 port {port} (request 2 on it; no new handshake)"
        in trace_of(second)
    )
    assert not any(line.startswith("connected to") for line in trace_of(second))
    assert "< HTTP/1.1 200 Status" in trace_of(second)


def test_reuse_connections_is_an_option_of_the_http_probe(manager: PluginManager) -> None:
    from anyprobe.plugins.http import HttpOptions

    assert HttpOptions().reuse_connections is False
    assert HttpOptions(reuse_connections=True).reuse_connections is True
    with pytest.raises(ValueError, match="reuse_connections"):
        HttpOptions(reuse_connections="sometimes")


# -- a reused check sends what a fresh one sends -----------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"headers": {"X-Trace": "a b", "host": "example.test"}, "user_agent": "ua/1"},
        {"method": "POST", "json_body": {"k": [1, 2]}, "username": "u", "password": "p"},
        {"method": "HEAD", "bearer_token": "t0k3n", "server_name": "localhost"},
    ],
)
async def test_a_routed_request_is_the_request_a_url_split_on_its_own_sends(
    manager: PluginManager,
    options: dict[str, Any],
    scheme: str,
    http_ca: trustme.CA,
    http_ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first request of a check is worked out once per origin (headers
    and their bytes, a :class:`Route`) and only its target per URL, on a
    fresh connection and on a reused one: it must be the request the check
    sends when its URL is split on its own, for every shape of URL (the ones
    a route does not take included)."""
    import anyprobe.plugins.http as http_probe

    async def ok(request: Request, stream: ByteStream) -> bool:
        await answer(stream, 200, b"" if request.method == "HEAD" else b"ok\n")
        return True

    tails = [
        "",
        "/",
        "/a/b.txt",
        "?",
        "?q=1&r=%20x",
        "/p;x=1/~u/(x)*,!$'+:@",
        "/%7Euser/a%2Fb?x=y?z",
        "/caf\u00e9?q=\u00e9",
        "/frag#part",
        "/x\\y",
    ]
    routed = 0
    first_hop = http_probe.first_hop

    def counted(*args: Any) -> Any:
        nonlocal routed
        hop = first_hop(*args)
        routed += hop is not None
        return hop

    context = server_context(http_ca, "localhost", "127.0.0.1") if scheme == "https" else None
    tls = {"ca_file": http_ca_file} if scheme == "https" else {}
    sent: dict[str, list[tuple[str, str, tuple[tuple[str, str], ...], bytes]]] = {}
    for mode in ("split", "fresh", "reuse"):
        reuse = mode == "reuse"
        routed = 0
        monkeypatch.setattr(
            http_probe, "first_hop", counted if mode != "split" else lambda *args: None
        )
        wire = Wire()
        async with serve_keep_alive(wire, routes=ok, ssl_context=context) as port:
            urls = [f"{scheme}://127.0.0.1:{port}{tail}" for tail in tails]
            urls += [
                f"{scheme}://u:pw@127.0.0.1:{port}/auth",
                f"{scheme.upper()}://LocalHost:{port}/Upper?Case",
            ]
            results = await run(urls, manager, reuse_connections=reuse, **tls, **options)
            await wire.all_closed()
        assert [r.status for r in results] == [Status.OK] * len(urls), [r.summary for r in results]
        # All but the URLs with an @ in the path, a non-ASCII path, a
        # fragment, a backslash, userinfo.
        assert routed == (0 if mode == "split" else 7)
        if reuse:  # one connection to 127.0.0.1, one to localhost
            assert wire.accepted == 2, " ".join(
                f"{r.target}={r.metrics['connection_reused']}" for r in results
            )
            assert sum(r.metrics["connection_reused"] for r in results) == len(urls) - 2
        else:
            assert wire.accepted == len(urls)
        by_target = sorted(wire.requests, key=lambda r: r.target)
        sent[mode] = [
            (
                r.method,
                r.target,
                tuple((name, value.replace(str(port), "PORT")) for name, value in r.raw_headers),
                r.body,
            )
            for r in by_target
        ]
    assert len(sent["split"]) == len(tails) + 2
    assert sent["fresh"] == sent["split"]
    # A reused check sends no Connection: close; all else is the same.
    assert sent["reuse"] == [
        (method, target, tuple(h for h in headers if h[0].lower() != "connection"), body)
        for method, target, headers, body in sent["split"]
    ]
    assert all(("Connection", "close") in headers for _, _, headers, _ in sent["split"])
