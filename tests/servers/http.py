"""HTTP(S) servers for the HTTP probe's tests, on loopback, for both backends.

The servers run in the test's own event loop (``async with serve_http(...)``),
so each test starts exactly the server it needs. Certificates come from
trustme; :func:`self_signed` makes a certificate no CA signed.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import ByteStream, SocketAttribute

from anyprobe._http_server import Request, respond, serve_http

from .threaded import blocking_tls_server

__all__ = ["http_ca", "http_ca_file", "http_client_cert"]

BIG_BODY_BYTES = 50 * 1024 * 1024
JSON_BODY = b'{"status": "UP", "version": "1.4.2", "checks": [{"name": "db", "ok": true}]}'


@pytest.fixture(scope="session")
def http_ca() -> trustme.CA:
    """A test CA; the probe trusts it through ``ca_file``."""
    return trustme.CA()


@pytest.fixture
def http_ca_file(http_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    http_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def http_client_cert(http_ca: trustme.CA, tmp_path: Path) -> str:
    """A client certificate (with its key) from the test CA, as one PEM file."""
    cert = http_ca.issue_cert("client@anyprobe.test")
    path = tmp_path / "client.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


def server_context(
    ca: trustme.CA,
    *names: str,
    days_left: float | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server SSL context with a certificate for ``names`` from ``ca``."""
    now = datetime.datetime.now(datetime.UTC)
    not_after = None
    not_before = None
    if days_left is not None:
        not_after = now + datetime.timedelta(days=days_left)
        not_before = min(now, not_after) - datetime.timedelta(days=30)
    cert = ca.issue_cert(*(names or ("localhost",)), not_before=not_before, not_after=not_after)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


def self_signed(tmp_path: Path, name: str = "localhost") -> ssl.SSLContext:
    """A server SSL context whose certificate signed itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "self-signed.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(path))
    return context


async def reset(stream: ByteStream) -> None:
    """Close ``stream``'s socket with a TCP reset (SO_LINGER 0)."""
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


class TestApp:
    """The routes the HTTP probe's tests use; ``requests`` records what came in."""

    __test__ = False  # not a test class, despite its name

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request, stream: ByteStream) -> None:
        self.requests.append(request)
        path = request.path
        if path == "/ok":
            await respond(stream, 200, b"hello from anyprobe tests\n")
        elif path.startswith("/status/"):
            await respond(stream, int(path.rsplit("/", 1)[1]), b"status page\n")
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            if left:
                await respond(stream, 302, headers=[("Location", f"/redirect/{left - 1}")])
            else:
                await respond(stream, 200, b"end of the chain\n")
        elif path == "/loop/a":
            await respond(stream, 301, headers=[("Location", "/loop/b")])
        elif path == "/loop/b":
            await respond(stream, 301, headers=[("Location", "/loop/a")])
        elif path == "/post-redirect":
            await respond(stream, 303, headers=[("Location", "/method")])
        elif path == "/method":
            await respond(stream, 200, request.method.encode())
        elif path == "/big":
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY_BYTES}\r\n\r\n"
            await stream.send(head.encode())
            chunk = b"x" * 65536
            for _ in range(BIG_BODY_BYTES // len(chunk)):
                await stream.send(chunk)
        elif path == "/json":
            await respond(stream, 200, JSON_BODY, [("Content-Type", "application/json")])
        elif path == "/headers":
            await respond(stream, 200, b"ok", [("Content-Type", "text/plain"), ("X-Build", "42")])
        elif path == "/auth":
            # Answers 200 only for the expected credentials, echoing nothing secret.
            expected = request.headers.get("x-expect-authorization")
            ok = expected is not None and request.headers.get("authorization") == expected
            await respond(stream, 200 if ok else 401, b"authorised\n" if ok else b"denied\n")
        elif path == "/echo":
            # Echoes the request head: a body that holds the secrets, to show they stay out.
            lines = [f"{k}: {v}" for k, v in request.headers.items()]
            await respond(stream, 200, "\n".join(lines).encode())
        elif path == "/trickle":
            for byte in b"HTTP/1.1 200 OK\r\n\r\n":
                await stream.send(bytes([byte]))
                await anyio.sleep(1)
        elif path == "/silent":
            await anyio.sleep_forever()
        elif path == "/reset":
            await reset(stream)
        elif path == "/close":
            await stream.aclose()
        elif path == "/garbage":
            await stream.send(b"\x00\x01 this is not HTTP at all \r\n\r\n")
        else:
            await respond(stream, 404, b"not found\n")


@asynccontextmanager
async def serve_raw(
    handler: Callable[[ByteStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server on loopback running ``handler`` per connection; yields its port."""

    async def guarded(stream: ByteStream) -> None:
        async with stream:
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await handler(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, guarded)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve_proxy() -> AsyncIterator[tuple[int, list[str]]]:
    """A small forwarding proxy: CONNECT tunnels and absolute-form requests.

    Yields its port and the list of request lines it received.
    """
    seen: list[str] = []

    async def pipe(source: ByteStream, sink: ByteStream) -> None:
        try:
            while True:
                await sink.send(await source.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def handle(request: Request, client: ByteStream) -> None:
        seen.append(f"{request.method} {request.target} {request.version}")
        if request.method == "CONNECT":
            host, _, port = request.target.rpartition(":")
            upstream = await anyio.connect_tcp(host.strip("[]"), int(port))
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = b""
        else:
            authority = request.target.split("/", 3)[2]
            host, _, port = authority.rpartition(":")
            upstream = await anyio.connect_tcp(host.strip("[]"), int(port or 80))
            lines = [f"{request.method} {request.target} {request.version}"]
            lines += [f"{name}: {value}" for name, value in request.raw_headers]
            rest = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body
        async with upstream, anyio.create_task_group() as tg:
            if rest:
                await upstream.send(rest)
            tg.start_soon(pipe, upstream, client)
            await pipe(client, upstream)

    async with serve_http(handle) as port:
        yield port, seen


@asynccontextmanager
async def serve_h2(certfile: str, keyfile: str, backend: str) -> AsyncIterator[int]:
    """Hypercorn (HTTP/2 over TLS, h2 in ALPN) on the test's own event loop."""
    from hypercorn.config import Config

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = f"spoke HTTP/{scope['http_version']}".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-server", b"h2")]}
        )
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.certfile = certfile
    config.keyfile = keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.errorlog = None
    stop = anyio.Event()
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

        tg.start_soon(run)
        try:
            yield port
        finally:
            stop.set()


@contextmanager
def threaded_tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """An HTTPS server on blocking sockets (it sends its alerts, as nginx
    does), answering 200 to each request; yields its port."""

    def answer(tls: ssl.SSLSocket) -> None:
        tls.recv(65536)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with blocking_tls_server(context, answer) as port:
        yield port


def cert_files(ca: trustme.CA, tmp_path: Path, name: str = "localhost") -> Iterator[str]:
    """Write a certificate for ``name`` and its key; yields the two paths."""
    cert = ca.issue_cert(name)
    certfile, keyfile = tmp_path / "h2-cert.pem", tmp_path / "h2-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    yield str(certfile)
    yield str(keyfile)
