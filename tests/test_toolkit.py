"""The probe toolkit: ctx.connect(), ctx.connect_socket(), ctx.resolve() and
the Connection's reads, against real loopback servers, on both backends."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import SplitResult

import anyio
import pytest
from pydantic import Field

import anyprobe
from anyprobe import CheckContext, CheckFailed, Outcome, PluginManager, Result, Status, Target
from anyprobe.net import IpFamily, address_policy, connect_socket
from anyprobe.testing import CLOSE, LineServer, run_checks
from anyprobe.tls import TlsOptions
from tests.servers.banner import TlsCa

pytestmark = pytest.mark.anyio

Script = Callable[[Target, "KitOptions", CheckContext], Awaitable[Outcome]]
SCRIPTS: dict[str, Script] = {}


class KitOptions(TlsOptions):
    ip_family: IpFamily = Field("any", description="Address family.")


class KitProbe(anyprobe.Probe[KitOptions]):
    """``kit://HOST:PORT/SCRIPT``: runs the test's script with the target."""

    name = "kit"
    schemes = ("kit",)
    Options = KitOptions

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", url.port

    async def check(self, target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        return await SCRIPTS[target.url.rsplit("/", 1)[1]](target, options, ctx)


class KitPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(KitProbe)


@pytest.fixture
def kit(manager: PluginManager) -> Iterator[Callable[..., Awaitable[Result]]]:
    """``await kit(script, port, **options)``: one check of ``script`` against ``port``."""
    manager.register(KitPlugin(), name="kit")

    async def run(script: Script, port: int, host: str = "127.0.0.1", **kwargs: Any) -> Result:
        SCRIPTS[script.__name__] = script
        options = kwargs.pop("options", {})
        record = await run_checks(
            manager, [f"kit://{host}:{port}/{script.__name__}"], options=options, **kwargs
        )
        return record.result

    yield run
    SCRIPTS.clear()


async def test_expect_line_says_what_was_expected_and_what_came(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({"PING": "-NOAUTH Authentication required"})

    async def ping(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("PING\r\n")
            with ctx.phase("ping"):
                await conn.expect_line("+PONG")
        return Outcome.ok("pong")

    result = await kit(ping, server.port)
    assert result.status is Status.CRITICAL
    assert result.summary == "expected '+PONG', got '-NOAUTH Authentication required'"
    assert result.error is not None and result.error.phase == "ping"
    assert {"resolve", "connect", "ping"} <= set(result.phases)


async def test_a_refused_connection_is_critical_in_the_connect_phase(
    anyio_backend: str, kit: Any, closed_port: int
) -> None:
    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port):
            return Outcome.ok("connected")

    result = await kit(connect, closed_port)
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"
    assert result.error.type == "ConnectionRefusedError"


async def test_ip_family_is_honoured_in_the_resolve_phase(
    anyio_backend: str, kit: Any, listening_port: int
) -> None:
    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port, ip_family=options.ip_family) as conn:
            return Outcome.ok(f"connected to {conn.where}")

    result = await kit(connect, listening_port, options={"ip_family": "ipv6"})
    assert result.summary == "127.0.0.1 is not an ipv6 address"
    assert result.error is not None and result.error.phase == "resolve"
    result = await kit(connect, listening_port, options={"ip_family": "ipv4"}, explain=True)
    assert result.summary == f"connected to 127.0.0.1:{listening_port}"
    assert [e.message for e in result.trace] == [
        "resolved 127.0.0.1 to 127.0.0.1",
        f"connected to 127.0.0.1 port {listening_port}",
    ]


async def test_the_address_policy_applies_to_connect_and_resolve(
    anyio_backend: str, kit: Any, listening_port: int
) -> None:
    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port):
            return Outcome.ok("connected")

    async def resolve(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        addresses = await ctx.resolve(target.host, target.port)
        return Outcome.ok(", ".join(addresses))

    with address_policy(lambda host, addresses: f"{host} is not allowed"):
        for script in (connect, resolve):
            result = await kit(script, listening_port)
            assert result.status is Status.CRITICAL
            assert result.summary == "127.0.0.1 is not allowed"
            assert result.error is not None and result.error.phase == "resolve"
    result = await kit(resolve, listening_port)
    assert result.summary == "127.0.0.1"
    assert "resolve" in result.phases


async def test_reads_are_bounded_and_keep_what_follows(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({"GET": ["$5", "hello", "+OK done", CLOSE]})

    async def bulk(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send(b"GET\r\n")
            size = int((await conn.read_line())[1:])
            value = await conn.read_exactly(size + 2)
            status = await conn.read_until(" ")
            rest = await conn.read_line()
            closed = await conn.receive()
        return Outcome.ok(f"{value!r} {status!r} {rest!r} {closed!r}")

    result = await kit(bulk, server.port)
    assert result.summary == "b'hello\\r\\n' b'+OK' 'done' b''", result.summary


async def test_a_line_over_the_limit_fails_quoting_it(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({"INFO": "x" * 100})

    async def info(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("INFO\r\n")
            await conn.read_line(limit=10)
        return Outcome.ok("read")

    result = await kit(info, server.port)
    assert result.status is Status.CRITICAL
    assert result.summary == f"no '\\n' in the first 10 bytes: got '{'x' * 60}'..."


async def test_a_connection_closed_early_says_how_much_came(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({"GET": ["abc", CLOSE], "LINE": CLOSE})

    async def exactly(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("GET\r\n")
            await conn.read_exactly(10)
        return Outcome.ok("read")

    async def line(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("LINE\r\n")
            await conn.read_line()
        return Outcome.ok("read")

    result = await kit(exactly, server.port)
    assert result.summary == "the server closed the connection after 5 of 10 bytes"
    result = await kit(line, server.port)
    assert result.summary == "the server closed the connection"


async def test_expect_a_pattern_within_a_budget(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({"INFO": ["# Replication", "role:replica", "connected_slaves:0"]})

    async def role(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        pattern = anyprobe.compile_pattern(r"^role:master", binary=True, multiline=True)
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("INFO\r\n")
            await conn.expect(pattern, budget=20)
        return Outcome.ok("master")

    async def replica(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("INFO\r\n")
            before = await conn.expect("role:")
            value = await conn.read_line()
        return Outcome.ok(f"{before!r} then {value}")

    result = await kit(role, server.port)
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "expected /^role:master/ in the first 20 bytes; got '# Replication\\r\\nrole:' (20 bytes)"
    )
    result = await kit(replica, server.port)
    assert result.summary == "b'# Replication\\r\\nrole:' then replica"


async def test_tls_through_connect_with_the_shared_certificate_verdicts(
    anyio_backend: str, kit: Any, tls_ca: TlsCa, tls_server: Callable[..., int]
) -> None:
    async def banner(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port, tls=options) as conn:
            line = await conn.read_line()
            assert conn.tls is not None
            return Outcome.ok(f"{conn.tls.version} {line}")

    ca = {"ca_file": str(tls_ca.ca_file)}
    result = await kit(banner, tls_server(days_left=90), host="localhost", options=ca)
    assert result.status is Status.OK, result.summary
    assert result.summary == "TLSv1.3 220 banner.test ESMTP ready"
    assert {"resolve", "connect", "tls"} <= set(result.phases)
    result = await kit(banner, tls_server(days_left=-3), host="localhost", options=ca)
    assert result.status is Status.CRITICAL
    assert result.summary == "certificate expired 3 days ago"
    assert result.error is not None and result.error.phase == "tls"
    result = await kit(banner, tls_server(days_left=90), host="localhost")
    assert result.summary.startswith("certificate issued by an unknown CA") or (
        "self-signed" in result.summary
    )


async def test_misuse_is_loud(anyio_backend: str, kit: Any, listening_port: int) -> None:
    async def bad_port(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        async with ctx.connect(target.host, str(target.port)):  # type: ignore[arg-type]
            return Outcome.ok("connected")

    async def bad_send(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send(42)  # type: ignore[arg-type]
            return Outcome.ok("sent")

    async def bad_expectation(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect(target.host, target.port) as conn:
            await conn.expect_line(b"+OK")  # type: ignore[arg-type]
            return Outcome.ok("read")

    result = await kit(bad_expectation, listening_port)
    assert result.status is Status.UNKNOWN
    assert "TypeError: expect_line() takes a str or an anyprobe.Pattern, not bytes" in (
        result.summary
    )
    result = await kit(bad_port, listening_port)
    assert result.status is Status.UNKNOWN
    assert "TypeError: connect() needs a port from 1 to 65535, not '" in result.summary
    result = await kit(bad_send, listening_port)
    assert result.status is Status.UNKNOWN
    assert "TypeError: send() takes bytes or str, not int" in result.summary


async def test_hidden_bytes_are_masked_in_trace_and_summary(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server(lambda line: f"-ERR unknown token {line.split()[-1]}")

    async def token(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        ctx.hide("tok-123456")
        async with ctx.connect(target.host, target.port) as conn:
            await conn.send("TOKEN tok-123456\r\n")
            await conn.expect_line("+OK")
        return Outcome.ok("accepted")

    result = await kit(token, server.port, explain=True)
    assert result.summary == "expected '+OK', got '-ERR unknown token ***'"
    trace = "\n".join(e.message for e in result.trace)
    assert "sent 18 bytes: 'TOKEN ***\\r\\n'" in trace
    assert "-ERR unknown token ***\\r\\n'" in trace
    assert "tok-123456" not in repr(result.as_dict())


# -- URL shape --------------------------------------------------------------------


class ShapedProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    name = "shaped"
    schemes = ("shaped",)
    default_ports = {"shaped": 6379}

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        anyprobe.check_url_shape(url, text)
        if url.hostname == "forbidden":
            raise anyprobe.TargetError("this host is forbidden")
        return super().validate_url(url, text)


class ShapedPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(ShapedProbe)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("shaped://db/0", "shaped://db/0: a path (/0) is not taken by shaped:// URLs"),
        ("shaped://db?x=1", "shaped://db?x=1: a query (?x=1) is not taken by shaped:// URLs"),
        ("shaped://db#top", "shaped://db#top: a fragment (#top) is not taken by shaped:// URLs"),
        (
            "shaped://u:pw@db",
            "shaped://u:***@db: a password in a shaped:// URL is not taken (set it in an option",
        ),
        ("shaped://forbidden", "shaped://forbidden: this host is forbidden"),
        ("shaped://:80", "shaped://:80: no host in the URL"),
    ],
)
def test_url_shape_errors_name_the_target(manager: PluginManager, url: str, message: str) -> None:
    manager.register(ShapedPlugin(), name="shaped")
    with pytest.raises(anyprobe.TargetError) as info:
        anyprobe.prepare([url], manager=manager)
    assert str(info.value).startswith(message), str(info.value)
    assert "pw" not in str(info.value)


def test_url_shape_allows_what_the_probe_takes(manager: PluginManager) -> None:
    manager.register(ShapedPlugin(), name="shaped")
    [target] = anyprobe.prepare(["shaped://user@DB/"], manager=manager).targets
    assert (target.host, target.port) == ("db", 6379)


# -- ctx.connect_socket(): a connected socket before any stream wraps it ------


@pytest.fixture
def quiet_server() -> Iterator[socket.socket]:
    """A loopback listener that never accepts by itself: the test accepts."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def peer_of(server: socket.socket) -> socket.socket:
    """The server side of the connection the check opened (queued in the backlog)."""
    server.settimeout(5)
    accepted, _ = server.accept()
    accepted.settimeout(5)
    return accepted


async def test_phases_trace_and_a_fresh_non_blocking_socket(
    anyio_backend: str, kit: Any, anyprobe_line_server: Callable[..., LineServer]
) -> None:
    server = anyprobe_line_server({}, greeting="SSH-2.0-test")
    seen: dict[str, Any] = {}

    async def peek(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(target.host, target.port) as sock:
            seen["sock"] = sock
            assert isinstance(sock, socket.socket)
            assert not sock.getblocking()
            with anyio.fail_after(5):
                data = b""
                while not data.endswith(b"\n"):  # bounded by fail_after
                    await anyio.wait_readable(sock)
                    data = sock.recv(100, socket.MSG_PEEK)
            # Nothing consumed: the greeting is still there for the library.
            assert sock.recv(100) == data
            return Outcome.ok(f"{sock.getpeername()[0]} {data!r}")

    result = await kit(peek, server.port, explain=True)
    assert result.status is Status.OK, result.summary
    assert result.summary == "127.0.0.1 b'SSH-2.0-test\\r\\n'"
    assert {"resolve", "connect"} <= set(result.phases)
    assert [e.message for e in result.trace] == [
        "resolved 127.0.0.1 to 127.0.0.1",
        f"connected to 127.0.0.1 port {server.port}",
    ]
    assert seen["sock"].fileno() == -1  # closed when the block ended


async def test_the_socket_is_closed_when_the_block_ends(
    anyio_backend: str, kit: Any, quiet_server: socket.socket
) -> None:
    port = quiet_server.getsockname()[1]
    held: list[socket.socket] = []  # a reference: closed by the block, not collected

    async def hold(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(target.host, target.port) as sock:
            held.append(sock)
            if options.ip_family == "ipv4":
                raise RuntimeError("boom")
            return Outcome.ok(str(sock.getsockname()[1]))

    result = await kit(hold, port)
    assert result.status is Status.OK
    assert held[0].fileno() == -1
    with peer_of(quiet_server) as peer:
        assert peer.getpeername()[1] == int(result.summary)
        assert peer.recv(10) == b""  # the client side was closed
    # Closed on an exception too.
    result = await kit(hold, port, options={"ip_family": "ipv4"})
    assert result.status is Status.UNKNOWN
    assert held[1].fileno() == -1
    with peer_of(quiet_server) as peer:
        assert peer.recv(10) == b""


async def test_a_detached_socket_is_left_to_the_caller(
    anyio_backend: str, kit: Any, quiet_server: socket.socket
) -> None:
    port = quiet_server.getsockname()[1]
    taken: list[int] = []

    async def take(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(target.host, target.port) as sock:
            taken.append(sock.detach())
        return Outcome.ok("taken")

    result = await kit(take, port)
    assert result.status is Status.OK
    with socket.socket(fileno=taken[0]) as mine, peer_of(quiet_server) as peer:
        mine.setblocking(True)
        mine.sendall(b"still open")
        assert peer.recv(10) == b"still open"


async def test_a_refused_connection_is_the_standard_summary(
    anyio_backend: str, kit: Any, closed_port: int
) -> None:
    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(target.host, target.port):
            return Outcome.ok("connected")

    result = await kit(connect, closed_port)
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"
    assert result.error.type == "ConnectionRefusedError"


async def test_ip_family_and_the_address_policy(
    anyio_backend: str, kit: Any, listening_port: int
) -> None:
    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(
            target.host, target.port, ip_family=options.ip_family
        ) as sock:
            return Outcome.ok(f"connected over {sock.family.name}")

    result = await kit(connect, listening_port, options={"ip_family": "ipv6"})
    assert result.summary == "127.0.0.1 is not an ipv6 address"
    assert result.error is not None and result.error.phase == "resolve"
    result = await kit(connect, listening_port, options={"ip_family": "ipv4"})
    assert result.summary == "connected over AF_INET"
    with address_policy(lambda host, addresses: f"{host} is not allowed"):
        result = await kit(connect, listening_port)
    assert result.status is Status.CRITICAL
    assert result.summary == "127.0.0.1 is not allowed"
    assert result.error is not None and result.error.phase == "resolve"


@pytest.fixture
def two_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """``two.test`` resolves to 127.0.0.2 then 127.0.0.1 (the resolver only:
    the connects are real)."""
    real = anyio.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> Any:
        if host != "two.test":
            return await real(host, port, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in ("127.0.0.2", "127.0.0.1")
        ]

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)


async def test_every_address_is_tried_in_order(
    anyio_backend: str, kit: Any, quiet_server: socket.socket, two_addresses: None
) -> None:
    port = quiet_server.getsockname()[1]  # listens on 127.0.0.1 only: .2 refuses

    async def connect(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        assert target.port is not None
        async with ctx.connect_socket(target.host, target.port) as sock:
            return Outcome.ok(f"connected to {sock.getpeername()[0]}")

    result = await kit(connect, port, host="two.test", explain=True)
    assert result.summary == "connected to 127.0.0.1"
    assert [e.message for e in result.trace] == [
        "resolved two.test to 127.0.0.2, 127.0.0.1",
        f"connected to 127.0.0.1 port {port}",
    ]
    quiet_server.close()
    result = await kit(connect, port, host="two.test")
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_connect_socket_misuse_is_loud(
    anyio_backend: str, kit: Any, listening_port: int
) -> None:
    async def bad_port(target: Target, options: KitOptions, ctx: CheckContext) -> Outcome:
        async with ctx.connect_socket(target.host, 0):
            return Outcome.ok("connected")

    result = await kit(bad_port, listening_port)
    assert result.status is Status.UNKNOWN
    assert "TypeError: connect_socket() needs a port from 1 to 65535, not 0" in result.summary


async def test_net_connect_socket_checks_the_policy_and_raises_os_errors(
    anyio_backend: str, closed_port: int, listening_port: int
) -> None:
    with pytest.raises(ConnectionRefusedError):
        await connect_socket("127.0.0.1", closed_port)
    sock = await connect_socket("127.0.0.1", listening_port)
    with sock:
        assert not sock.getblocking()
        assert sock.getpeername() == ("127.0.0.1", listening_port)
    refusing = address_policy(lambda host, addresses: "refused by policy")
    with refusing, pytest.raises(CheckFailed, match="refused by policy"):
        await connect_socket("127.0.0.1", listening_port)
