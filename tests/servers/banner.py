"""Line-protocol servers for the TCP probe: banners, silence, trickles, resets,
garbage instead of TLS, TLS with trustme certificates, and SMTP/IMAP/POP3
servers that offer STARTTLS.

Each server runs on anyio in an event loop of its own (a blocking portal in a
thread), so it serves tests on either backend alike, and stops at teardown.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream

from .threaded import blocking_tls_server

__all__ = [
    "banner_port",
    "client_cert_server",
    "not_tls_port",
    "quiet_port",
    "resetting_port",
    "starttls_server",
    "tls_ca",
    "tls_server",
    "trickle_port",
]

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]

BANNER = b"220 banner.test ESMTP ready\r\n"


@contextlib.contextmanager
def serve_tcp(handler: Handler, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``handler`` on an ephemeral port of ``host``; yields the port."""

    async def guarded(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            # A client that hangs up (or a failed handshake) ends one connection only.
            with contextlib.suppress(Exception):
                await handler(stream)

    with anyio.from_thread.start_blocking_portal() as portal:
        listener = portal.call(
            functools.partial(anyio.create_tcp_listener, local_host=host, local_port=0)
        )
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        future = portal.start_task_soon(listener.serve, guarded)
        try:
            yield port
        finally:
            future.cancel()
            portal.call(listener.aclose)


async def read_line(reader: BufferedByteReceiveStream) -> bytes:
    return (await reader.receive_until(b"\n", 4096)).rstrip(b"\r")


async def echo_lines(stream: anyio.abc.ByteStream, reader: BufferedByteReceiveStream) -> None:
    """Answer each line with ``ECHO <line>``; QUIT ends the session with 221."""
    for _ in range(100):
        line = await read_line(reader)
        if line.upper() == b"QUIT":
            await stream.send(b"221 bye\r\n")
            return
        await stream.send(b"ECHO " + line + b"\r\n")


async def banner_then_echo(stream: anyio.abc.SocketStream) -> None:
    await stream.send(BANNER)
    await echo_lines(stream, BufferedByteReceiveStream(stream))


@pytest.fixture
def banner_port() -> Iterator[int]:
    """Sends a banner, then echoes each line back as ``ECHO <line>``."""
    with serve_tcp(banner_then_echo) as port:
        yield port


@pytest.fixture
def quiet_port() -> Iterator[int]:
    """Accepts and never sends a byte (it reads until the client leaves)."""

    async def silent(stream: anyio.abc.SocketStream) -> None:
        for _ in range(10_000):
            await stream.receive()

    with serve_tcp(silent) as port:
        yield port


@pytest.fixture
def trickle_port() -> Iterator[int]:
    """Sends its banner one byte at a time, 20 ms apart."""

    async def trickle(stream: anyio.abc.SocketStream) -> None:
        for byte in b"220 slow banner\r\n":
            await stream.send(bytes([byte]))
            await anyio.sleep(0.02)
        await anyio.sleep(5)

    with serve_tcp(trickle) as port:
        yield port


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """Accepts, then resets the connection (RST, through SO_LINGER 0)."""

    async def reset(stream: anyio.abc.SocketStream) -> None:
        raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await anyio.sleep(0.05)  # let the client finish connecting and start reading

    with serve_tcp(reset) as port:
        yield port


@pytest.fixture
def not_tls_port() -> Iterator[int]:
    """Answers whatever comes (a TLS ClientHello, say) with plain HTTP."""

    async def garbage(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await anyio.sleep(1)

    with serve_tcp(garbage) as port:
        yield port


# -- TLS ------------------------------------------------------------------------


@dataclass
class TlsCa:
    """A trustme CA, its PEM file for ``ca_file``, and leaf certificates on demand."""

    ca: trustme.CA
    ca_file: Path

    def server_context(self, days_left: float = 90, name: str = "localhost") -> ssl.SSLContext:
        """A server context whose certificate (for ``name`` and 127.0.0.1)
        expires in ``days_left`` days (negative: expired that long ago)."""
        now = datetime.datetime.now(datetime.UTC)
        not_after = now + datetime.timedelta(days=days_left)
        not_before = min(now, not_after) - datetime.timedelta(days=30)
        leaf = self.ca.issue_cert(name, "127.0.0.1", not_before=not_before, not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        return context

    def client_cert_file(self, directory: Path) -> Path:
        """A PEM file with a client certificate, its chain and its key."""
        path = directory / "client.pem"
        leaf = self.ca.issue_cert("client.example.test")
        leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsCa:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tls-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return TlsCa(ca, path)


@pytest.fixture
def tls_server(tls_ca: TlsCa) -> Iterator[Callable[..., int]]:
    """``tls_server(days_left=90, name="localhost", require_client_cert=False)``:
    a TLS server (banner, then echo) on a new port."""
    with contextlib.ExitStack() as stack:

        def start(
            days_left: float = 90, name: str = "localhost", require_client_cert: bool = False
        ) -> int:
            context = tls_ca.server_context(days_left, name)
            if require_client_cert:
                context.verify_mode = ssl.CERT_REQUIRED
                tls_ca.ca.configure_trust(context)

            async def handle(stream: anyio.abc.SocketStream) -> None:
                tls = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=context, standard_compatible=False
                )
                await banner_then_echo(tls)  # type: ignore[arg-type]

            return stack.enter_context(serve_tcp(handle))

        yield start


@contextlib.contextmanager
def serve_tls_blocking(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server on blocking sockets (it sends its alerts) that sends
    nothing and reads until the client leaves; yields its port."""

    def read_until_the_client_leaves(tls: ssl.SSLSocket) -> None:
        for _ in range(1000):  # wait for the client, who speaks first
            if not tls.recv(4096):
                break

    with blocking_tls_server(context, read_until_the_client_leaves) as port:
        yield port


@pytest.fixture
def client_cert_server(tls_ca: TlsCa) -> Iterator[int]:
    """A TLS 1.3 server that requires a client certificate from ``tls_ca``,
    refuses a client without one with the certificate_required alert, and
    otherwise waits for the client to speak (it sends no banner)."""
    context = tls_ca.server_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    tls_ca.ca.configure_trust(context)
    with serve_tls_blocking(context) as port:
        yield port


# -- STARTTLS ---------------------------------------------------------------------


@dataclass
class StartTlsBehaviour:
    """How a STARTTLS server misbehaves, if at all."""

    offer: bool = True
    refuse: bool = False
    inject: bool = False


async def _upgrade(
    stream: anyio.abc.SocketStream, reader: BufferedByteReceiveStream, context: ssl.SSLContext
) -> None:
    tls = await TLSStream.wrap(
        stream, server_side=True, ssl_context=context, standard_compatible=False
    )
    await echo_lines(tls, BufferedByteReceiveStream(tls))


def smtp_handler(context: ssl.SSLContext, how: StartTlsBehaviour) -> Handler:
    async def smtp(stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        await stream.send(b"220 smtp.test ESMTP\r\n")
        for _ in range(20):
            line = await read_line(reader)
            verb = line.split(b" ")[0].upper()
            if verb == b"EHLO":
                offers = b"250-STARTTLS\r\n" if how.offer else b""
                await stream.send(b"250-smtp.test hello\r\n250-PIPELINING\r\n" + offers)
                await stream.send(b"250 8BITMIME\r\n")
            elif verb == b"STARTTLS" and how.refuse:
                await stream.send(b"454 4.7.0 TLS not available\r\n")
            elif verb == b"STARTTLS":
                extra = b"250 injected\r\n" if how.inject else b""
                await stream.send(b"220 2.0.0 go ahead\r\n" + extra)
                await _upgrade(stream, reader, context)
                return
            else:
                await stream.send(b"502 what?\r\n")

    return smtp


def imap_handler(context: ssl.SSLContext, how: StartTlsBehaviour) -> Handler:
    async def imap(stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        await stream.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] imap.test ready\r\n")
        line = await read_line(reader)
        tag = line.split(b" ")[0]
        if how.refuse:
            await stream.send(tag + b" NO STARTTLS not available\r\n")
            return
        await stream.send(b"* note: upgrading\r\n" + tag + b" OK begin TLS now\r\n")
        await _upgrade(stream, reader, context)

    return imap


def pop3_handler(context: ssl.SSLContext, how: StartTlsBehaviour) -> Handler:
    async def pop3(stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        await stream.send(b"+OK pop3.test ready\r\n")
        await read_line(reader)
        if how.refuse:
            await stream.send(b"-ERR not now\r\n")
            return
        await stream.send(b"+OK begin TLS\r\n")
        await _upgrade(stream, reader, context)

    return pop3


_PROTOCOLS = {"smtp": smtp_handler, "imap": imap_handler, "pop3": pop3_handler}


@pytest.fixture
def starttls_server(tls_ca: TlsCa) -> Iterator[Callable[..., int]]:
    """``starttls_server("smtp", days_left=90, offer=True, refuse=False, inject=False)``:
    a minimal SMTP, IMAP or POP3 server offering STARTTLS; echoes lines once in TLS."""
    with contextlib.ExitStack() as stack:

        def start(protocol: str, days_left: float = 90, **how: Any) -> int:
            context = tls_ca.server_context(days_left)
            handler = _PROTOCOLS[protocol](context, StartTlsBehaviour(**how))
            return stack.enter_context(serve_tcp(handler))

        yield start
