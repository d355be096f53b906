"""The TCP probe's services for ``anyprobe demo``: a port that accepts, one
that refuses, and TLS servers with certificates made for the demo (one valid,
one expired). Registered by :mod:`anyprobe.plugins.tcp`'s
``anyprobe_demo_services`` hook; imported only when the demo runs.
"""

from __future__ import annotations

import datetime
import functools
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

import anyprobe


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


@asynccontextmanager
async def tls_demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """TLS servers with certificates made for the demo: one valid for 90 days
    (sending a banner), one that expired two days ago."""
    directory = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "anyprobe-tls-demo-"))
    try:
        ca_file, contexts = await anyio.to_thread.run_sync(
            _demo_certificates, directory, (90.0, -2.0)
        )

        async def banner(stream: Any, context: ssl.SSLContext) -> None:
            async with stream:
                with suppress(Exception):  # a client that gives up ends one connection
                    tls = await TLSStream.wrap(
                        stream, server_side=True, ssl_context=context, standard_compatible=False
                    )
                    await tls.send(b"220 demo.test ready\r\n")
                    await tls.receive()

        async with anyio.create_task_group() as tg:
            ports = []
            for context in contexts:
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
                ports.append(listener.extra(anyio.abc.SocketAttribute.local_port))
                tg.start_soon(listener.serve, functools.partial(banner, context=context))
            options = {"ca_file": str(ca_file), "server_name": "localhost"}
            yield [
                anyprobe.DemoCheck(
                    "tls: valid certificate and banner",
                    f"tls://127.0.0.1:{ports[0]}",
                    anyprobe.Status.OK,
                    options={**options, "expect": "220 "},
                ),
                anyprobe.DemoCheck(
                    "tls: expired certificate",
                    f"tls://127.0.0.1:{ports[1]}",
                    anyprobe.Status.CRITICAL,
                    options=options,
                ),
            ]
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, directory, True)


def _demo_certificates(
    directory: Path, days_left: tuple[float, ...]
) -> tuple[Path, list[ssl.SSLContext]]:
    """A throwaway CA (its PEM file in ``directory``) and a server context per
    entry of ``days_left``, whose certificate for localhost expires then."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anyprobe demo CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    contexts = []
    for index, days in enumerate(days_left):
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = now + datetime.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - datetime.timedelta(days=30))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = directory / f"server{index}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pem)
        contexts.append(context)
    return ca_file, contexts


async def _unused_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port
