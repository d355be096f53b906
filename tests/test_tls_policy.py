"""TLS policy shared by every TLS-speaking probe: ``tls_min_version`` /
``tls_max_version`` against real loopback TLS servers, on both backends."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream
from prometheus_client.parser import text_string_to_metric_families

import anyprobe
from anyprobe import PluginManager, Result, Status
from anyprobe.plugins.prometheus import exposition
from tests.cli import anyprobe as run_cli
from tests.cli import assert_one_clear_line
from tests.servers.banner import TlsCa, serve_tcp, serve_tls_blocking

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=5.0, explain=explain
    )
    return result


def leaf_fingerprint(port: int, tls_ca: TlsCa) -> str:
    """SHA-256 of the certificate the server on ``port`` presents, read with
    the standard library alone."""
    context = ssl.create_default_context(cafile=str(tls_ca.ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


@contextlib.contextmanager
def version_limited_server(
    tls_ca: TlsCa, *, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None
) -> Iterator[int]:
    """A TLS server that answers one HTTP request with 200 (or a banner line
    to a client that does not speak first), within the versions given."""
    context = tls_ca.server_context()
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum

    async def handle(stream: anyio.abc.SocketStream) -> None:
        tls = await TLSStream.wrap(
            stream, server_side=True, ssl_context=context, standard_compatible=False
        )
        reader = BufferedByteReceiveStream(tls)
        with anyio.move_on_after(0.5):
            await reader.receive_until(b"\r\n\r\n", 65536)
            await tls.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        await tls.send(b"ready\r\n")

    with serve_tcp(handle) as port:
        yield port


@contextlib.contextmanager
def refusing_server(
    tls_ca: TlsCa, *, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None
) -> Iterator[int]:
    """A TLS server (blocking sockets: it sends its alerts) that accepts only
    the versions given."""
    context = tls_ca.server_context()
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    with serve_tls_blocking(context) as port:
        yield port


@pytest.mark.parametrize("scheme", ["https", "tls"])
async def test_server_refusing_the_asked_version_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, scheme: str
) -> None:
    with refusing_server(tls_ca, minimum=ssl.TLSVersion.TLSv1_3) as port:
        result = await check_one(
            manager,
            f"{scheme}://localhost:{port}/",
            ca_file=str(tls_ca.ca_file),
            tls_max_version="1.2",
        )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "TLS handshake failed: the server refuses TLS 1.2 (protocol version alert)"
    )


async def test_refusing_old_versions_names_them(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa
) -> None:
    with refusing_server(tls_ca, minimum=ssl.TLSVersion.TLSv1_2) as port:
        result = await check_one(
            manager,
            f"tls://localhost:{port}",
            ca_file=str(tls_ca.ca_file),
            tls_min_version="1.0",
            tls_max_version="1.1",
        )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "TLS handshake failed: the server refuses TLS 1.0 to 1.1 (protocol version alert)"
    )


@pytest.mark.parametrize("scheme", ["https", "tls"])
async def test_allowed_version_is_negotiated_and_reported(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, scheme: str
) -> None:
    with version_limited_server(tls_ca, maximum=ssl.TLSVersion.TLSv1_2) as port:
        result = await check_one(
            manager,
            f"{scheme}://localhost:{port}/",
            ca_file=str(tls_ca.ca_file),
            tls_min_version="1.2",
        )
    assert result.status is Status.OK, result.summary
    assert result.metrics["tls_version"] == "TLSv1.2"


async def test_max_version_limits_what_a_modern_server_negotiates(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa
) -> None:
    with version_limited_server(tls_ca) as port:
        capped = await check_one(
            manager,
            f"https://localhost:{port}/",
            ca_file=str(tls_ca.ca_file),
            tls_max_version=1.2,  # as a TOML value arrives
        )
        newest = await check_one(manager, f"https://localhost:{port}/", ca_file=str(tls_ca.ca_file))
    assert capped.status is Status.OK, capped.summary
    assert capped.metrics["tls_version"] == "TLSv1.2"
    assert newest.metrics["tls_version"] == "TLSv1.3"


async def test_min_version_newer_than_the_server_is_critical(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa
) -> None:
    with refusing_server(tls_ca, maximum=ssl.TLSVersion.TLSv1_2) as port:
        result = await check_one(
            manager,
            f"tls://localhost:{port}",
            ca_file=str(tls_ca.ca_file),
            tls_min_version="1.3",
        )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "TLS handshake failed: the server refuses TLS 1.3 (protocol version alert)"
    )


@pytest.mark.parametrize("scheme", ["https", "tls"])
async def test_negotiated_version_cipher_and_chain_are_reported(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, scheme: str
) -> None:
    with version_limited_server(tls_ca, maximum=ssl.TLSVersion.TLSv1_2) as port:
        result = await check_one(
            manager, f"{scheme}://localhost:{port}/", ca_file=str(tls_ca.ca_file), explain=True
        )
        fingerprint = await anyio.to_thread.run_sync(leaf_fingerprint, port, tls_ca)
    assert result.status is Status.OK, result.summary
    assert result.metrics["tls_version"] == "TLSv1.2"
    cipher = result.metrics["tls_cipher"]
    assert cipher.startswith("ECDHE-"), cipher  # a TLS 1.2 suite name, not a 1.3 one
    lines = [entry.message for entry in result.trace]
    assert any(line.startswith(f"TLS TLSv1.2, cipher {cipher}") for line in lines), lines
    [leaf_line] = [line for line in lines if line.startswith("certificate 0: ")]
    assert f"SHA-256 {fingerprint}" in leaf_line
    assert "names localhost, 127.0.0.1" in leaf_line
    assert result.details["tls"]["certificates"][0]["fingerprint_sha256"] == fingerprint

    [family] = [
        f
        for f in text_string_to_metric_families(exposition([result]))
        if f.name == "probe_ssl_last_chain_info"
    ]
    [sample] = family.samples
    assert sample.value == 1.0
    assert sample.labels["fingerprint_sha256"] == fingerprint
    assert sample.labels["subjectalternative"] == "localhost,127.0.0.1"
    assert sample.labels["subject"] == result.details["tls"]["certificates"][0]["subject"]
    assert sample.labels["issuer"] == result.details["tls"]["certificates"][0]["issuer"]
    assert sample.labels["target"] == f"{scheme}://localhost:{port}/"


async def test_server_hanging_up_on_the_asked_version_names_it(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa
) -> None:
    # This server closes the connection without an alert.
    with version_limited_server(tls_ca, maximum=ssl.TLSVersion.TLSv1_2) as port:
        result = await check_one(
            manager, f"tls://localhost:{port}", ca_file=str(tls_ca.ca_file), tls_min_version="1.3"
        )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "the server closed the connection during the TLS handshake (offered TLS 1.3)"
    )


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("tls_min_version=1.4", "tls_min_version"),
        ('tls_max_version="TLSv1.2"', "tls_max_version"),
        ("tls_max_version=true", "tls_max_version"),
    ],
)
def test_bad_version_is_one_clear_line(setting: str, fragment: str) -> None:
    proc = run_cli("check", "tls://127.0.0.1:1", "--set", setting)
    assert_one_clear_line(proc, fragment, "1.0, 1.1, 1.2, 1.3")


def test_min_newer_than_max_is_one_clear_line() -> None:
    proc = run_cli(
        "check",
        "https://127.0.0.1:1/",
        "--set",
        "tls_min_version=1.3",
        "--set",
        "tls_max_version=1.2",
    )
    assert_one_clear_line(proc, "tls_min_version 1.3 must not be newer than tls_max_version 1.2")
