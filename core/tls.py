"""TLS for every probe that does a handshake: one implementation in one place.

- :class:`TlsOptions`: the options a TLS-speaking probe shares (``verify``,
  ``ca_file``, client certificate, ``server_name``, expiry thresholds); a
  probe's options model inherits it.
- :func:`client_context`: the :class:`ssl.SSLContext` for a set of options,
  built once per run and per distinct options through ``ctx.shared``.
- :func:`inspect_connection`: TLS version, cipher and the presented
  certificates (subject, issuer, SANs, validity, key type) of a finished
  handshake, as :class:`TlsInfo`; its ``details()`` go into a result.
- :func:`expiry_verdict`: the one place certificate expiry thresholds become
  ok / warning / critical.
- :func:`describe_tls_error`: an ``ssl`` error as a precise summary
  (``certificate expired``, ``certificate is for other.example, not example.com``).

The presented chain: Python 3.13 offers ``get_unverified_chain()``; Python
3.11 and 3.12 have the same method on the private ``_sslobj`` of a TLS
connection, which is used when present. Where neither exists, only the leaf
certificate (``getpeercert(binary_form=True)``) is inspected.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._errors import CheckFailed
from ._model import Status

if TYPE_CHECKING:
    from anyio.abc import ByteStream
    from anyio.streams.tls import TLSStream
    from cryptography.x509 import Certificate

    from ._probe import CheckContext
    from ._tls_options import TlsOptions

__all__ = [
    "CertificateInfo",
    "TlsInfo",
    "TlsOptions",
    "client_certificate_expiry_days",
    "client_context",
    "describe_tls_error",
    "expiry_verdict",
    "find_ssl_error",
    "inspect_connection",
    "parse_certificate",
    "peek_certificate",
    "start_tls",
]

SECONDS_PER_DAY = 86400.0


#: What parsing a peer's certificate imports (anyprobe.tls imports them lazily):
#: a probe's ``load_dependencies`` imports them before the run.
CERTIFICATE_MODULES = (
    "cryptography.x509",
    "cryptography.hazmat.primitives.hashes",
    "cryptography.hazmat.primitives.asymmetric.dsa",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.asymmetric.ed448",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.asymmetric.rsa",
)


#: The values of ``tls_min_version`` / ``tls_max_version``.
TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def __getattr__(name: str) -> Any:
    # TlsOptions is a pydantic model: imported when asked for, not with the TLS
    # helpers (a check that sets no option needs no pydantic; see
    # anyprobe.lazy_model). ``anyprobe.tls.TlsOptions`` and
    # ``from anyprobe.tls import TlsOptions`` work as ever.
    if name == "TlsOptions":
        import importlib

        model: type[TlsOptions] = importlib.import_module("anyprobe._tls_options").TlsOptions
        return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The largest PEM file read to check it (a CA bundle is a few hundred KiB).
MAX_PEM_BYTES = 16 * 2**20


def pem_file_problem(path: Any, *, key: bool = False) -> None:
    """Raise ValueError unless ``path`` holds a PEM certificate (or, with
    ``key``, a PEM private key): checked before the run, not at the first check."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES)
    except OSError as exc:
        shown = str(path) if len(str(path)) <= 120 else f"{str(path)[:120]}..."
        raise ValueError(f"cannot read {shown}: {exc.strerror or exc}") from None
    wanted = b"PRIVATE KEY-----" if key else b"CERTIFICATE-----"
    if b"-----BEGIN " not in data or wanted not in data:
        what = "private key" if key else "certificate"
        raise ValueError(f"{path} is not a PEM {what} file (no -----BEGIN ... {wanted.decode()})")


# -- SSL contexts -------------------------------------------------------------


def client_context(
    options: TlsOptions, ctx: CheckContext, *, alpn: Sequence[str] = ()
) -> ssl.SSLContext:
    """The client SSL context for ``options``, shared by every check of the run
    with the same TLS options and ALPN protocols.

    A CA file or client certificate that cannot be loaded raises
    :class:`~anyprobe.CheckFailed` (``unknown``: the check could not be made).
    """
    key = (
        "anyprobe.tls.client_context",
        options.verify,
        options.ca_file,
        options.client_cert,
        options.client_key,
        options.tls_min_version,
        options.tls_max_version,
        tuple(alpn),
    )
    return ctx.shared(key, lambda: build_client_context(options, alpn=alpn))


def build_client_context(options: TlsOptions, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A new client SSL context for ``options`` (prefer the cached :func:`client_context`)."""
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CheckFailed(
            f"cannot load ca_file {options.ca_file}: {_reason(exc)}",
            status=Status.UNKNOWN,
            error=exc,
        ) from None
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.client_cert:
        try:
            context.load_cert_chain(options.client_cert, options.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise CheckFailed(
                f"cannot load client certificate {options.client_cert}: {_reason(exc)}",
                status=Status.UNKNOWN,
                error=exc,
            ) from None
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1; offering them here is asked for.
        warnings.simplefilter("ignore", DeprecationWarning)
        _limit_versions(context, options)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _limit_versions(context: ssl.SSLContext, options: TlsOptions) -> None:
    low, high = options.tls_min_version, options.tls_max_version
    if high is not None:
        maximum = TLS_VERSIONS[high]
        if low is None and context.minimum_version > maximum:
            # Only an older version asked for: offer that one (and nothing newer).
            context.minimum_version = maximum
        context.maximum_version = maximum
    if low is not None:
        context.minimum_version = TLS_VERSIONS[low]
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL's default security level refuses TLS 1.0 and 1.1 (and their
        # SHA-1 signatures): to see whether a server still accepts them, the
        # client must be able to offer them.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


# -- certificates -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """One certificate, as a user reads it."""

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    key_type: str
    serial: str
    #: SHA-256 of the DER certificate, lowercase hex (as blackbox_exporter shows it).
    fingerprint_sha256: str = ""

    def expiry_days(self, now: float | None = None) -> float:
        """Days until ``not_after`` (negative once expired)."""
        now = time.time() if now is None else now
        return (self.not_after.timestamp() - now) / SECONDS_PER_DAY

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "key_type": self.key_type,
            "serial": self.serial,
            "fingerprint_sha256": self.fingerprint_sha256,
        }


def parse_certificate(data: bytes, *, pem: bool = False) -> CertificateInfo:
    """Read a DER (or PEM) certificate into a :class:`CertificateInfo`."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    return _certificate_info(cert)


def _certificate_info(cert: Certificate) -> CertificateInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(
            [*san.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        sans = ()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=sans,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=_key_type(cert),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _key_type(cert: Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except Exception:  # an algorithm cryptography does not know
        return "unknown"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What a finished handshake showed: version, cipher, ALPN, certificates.

    ``chain[0]`` is the leaf; ``chain`` holds the whole presented chain where
    Python offers it (see the module docstring), else the leaf alone.
    """

    version: str | None
    cipher: str | None
    alpn: str | None
    chain: tuple[CertificateInfo, ...] = field(default_factory=tuple)

    @property
    def leaf(self) -> CertificateInfo | None:
        return self.chain[0] if self.chain else None

    def cert_expiry_days(self, now: float | None = None) -> float | None:
        """Days until the leaf expires, as a browser shows it (never an intermediate's)."""
        leaf = self.leaf
        return None if leaf is None else round(leaf.expiry_days(now), 2)

    def metrics(self) -> dict[str, Any]:
        """``tls_version``, ``tls_cipher`` and ``cert_expiry_days`` for a result's metrics."""
        values: dict[str, Any] = {}
        if self.version:
            values["tls_version"] = self.version
        if self.cipher:
            values["tls_cipher"] = self.cipher
        days = self.cert_expiry_days()
        if days is not None:
            values["cert_expiry_days"] = days
        return values

    def details(self) -> dict[str, Any]:
        """The handshake and every presented certificate, for a result's details."""
        return {
            "version": self.version,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "certificates": [c.as_dict() for c in self.chain],
        }

    def describe(self) -> Iterator[str]:
        """Lines for an ``--explain`` trace."""
        yield f"TLS {self.version}, cipher {self.cipher}" + (
            f", ALPN {self.alpn}" if self.alpn else ""
        )
        for depth, cert in enumerate(self.chain):
            yield (
                f"certificate {depth}: {cert.subject} issued by {cert.issuer}, "
                f"valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}"
                + (f", names {', '.join(cert.sans)}" if cert.sans else "")
                + (f", SHA-256 {cert.fingerprint_sha256}" if cert.fingerprint_sha256 else "")
            )


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The DER certificates the server presented, leaf first.

    The whole chain on Python 3.13+ (public ``get_unverified_chain``) and on
    3.11/3.12 through the same method of the private ``_sslobj``; the leaf
    alone where neither exists.
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:
        try:
            chain = public()
        except (ssl.SSLError, ValueError):
            chain = None
        if chain:
            return [_der(c) for c in chain]
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        try:
            chain = private()
        except (ssl.SSLError, ValueError):
            chain = None
        if chain:
            return [_der(c) for c in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _der(cert: Any) -> bytes:
    if isinstance(cert, bytes):
        return cert
    return bytes(cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


def inspect_connection(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TlsInfo:
    """The :class:`TlsInfo` of a finished handshake.

    ``ssl_object`` is what anyio's ``TLSAttribute.ssl_object`` or httpcore's
    ``get_extra_info("ssl_object")`` returns.
    """
    cipher = ssl_object.cipher()
    chain: list[CertificateInfo] = []
    for der in presented_chain(ssl_object):
        try:
            chain.append(parse_certificate(der))
        except ValueError:  # a certificate cryptography cannot read: skip, keep the rest
            continue
    return TlsInfo(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        alpn=ssl_object.selected_alpn_protocol(),
        chain=tuple(chain),
    )


def client_certificate_expiry_days(options: TlsOptions, ctx: CheckContext) -> float | None:
    """Days until the configured client certificate expires (None without one).

    The file is read once per run.
    """
    path = options.client_cert
    if not path:
        return None

    def load() -> CertificateInfo | None:
        try:
            with open(path, "rb") as file:
                return parse_certificate(file.read(), pem=True)
        except (OSError, ValueError):
            return None

    info = ctx.shared(("anyprobe.tls.client_certificate", path), load)
    return None if info is None else round(info.expiry_days(), 2)


# -- verdicts -----------------------------------------------------------------


def expiry_verdict(days: float, options: TlsOptions) -> tuple[Status, str]:
    """The status and summary for a leaf certificate that expires in ``days``.

    >>> expiry_verdict(10.0, TlsOptions())
    (<Status.WARNING: 'warning'>, 'certificate expires in 10.0 days')
    """
    if days < 0:
        ago = -days
        text = f"{ago:.0f} days ago" if ago >= 1 else f"{ago * 24:.1f} hours ago"
        return Status.CRITICAL, f"certificate expired {text}"
    summary = f"certificate expires in {days:.1f} days"
    if days < options.cert_expiry_critical_days:
        return Status.CRITICAL, summary
    if days < options.cert_expiry_warning_days:
        return Status.WARNING, summary
    return Status.OK, summary


# -- errors ---------------------------------------------------------------------

_VERIFY_CODES = {
    9: "certificate is not yet valid",
    10: "certificate expired",
    # An unknown CA: say how to trust it.
    18: "self-signed certificate (to trust it, give it in ca_file)",
    19: "self-signed certificate in the chain (unknown CA; to trust it, give it in ca_file)",
    20: "certificate issued by an unknown CA (to trust that CA, give it in ca_file)",
    21: "certificate issued by an unknown CA (cannot verify the leaf; "
    "to trust that CA, give it in ca_file)",
    23: "certificate revoked",
    26: "certificate not meant for a server",
}

_REASONS = {
    "WRONG_VERSION_NUMBER": "not TLS: the server answered with something else",
    "RECORD_LAYER_FAILURE": "not TLS: the server answered with something else",
    "UNKNOWN_PROTOCOL": "not TLS: the server answered with something else",
    "PACKET_LENGTH_TOO_LONG": "not TLS: the server answered with something else",
    "HTTP_REQUEST": "not TLS: the server speaks plain HTTP",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected the client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's CA",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says the client certificate expired",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "TLS handshake refused by the server "
    "(no common protocol or cipher, or a client certificate is required)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the server",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the server",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the server",
    "TLSV1_ALERT_INTERNAL_ERROR": "the server failed the TLS handshake (internal error)",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not know the name sent as SNI",
    "TLSV1_ALERT_UNRECOGNIZED_NAME": "the server does not know the name sent as SNI",
}


def find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` behind ``exc`` (a library may wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup) and current.exceptions:
            current = current.exceptions[0]
        else:
            current = current.__cause__ or current.__context__
    return None


def describe_tls_error(exc: BaseException, server_name: str | None = None) -> str:
    """A short, precise summary of a failed handshake.

    ``server_name`` is the name the certificate was checked against; it makes
    a name mismatch read ``certificate is not valid for example.com``.
    """
    error = find_ssl_error(exc) or exc
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
            target = f" {server_name}" if server_name else " this name"
            return f"certificate is not valid for{target}"
        if code in _VERIFY_CODES:
            return _VERIFY_CODES[code]
        message = error.verify_message or _reason(error)
        return f"certificate verify failed: {message}"
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the server closed the connection during the TLS handshake"
    if isinstance(error, ssl.SSLError):
        reason = error.reason or ""
        if reason in _REASONS:
            return _REASONS[reason]
        if reason.endswith("_ALERT_CERTIFICATE_REQUIRED"):
            return _REASONS["TLSV13_ALERT_CERTIFICATE_REQUIRED"]
        return f"TLS error: {_reason(error)}"
    if isinstance(error, ConnectionResetError):
        return "connection reset by peer during the TLS handshake"
    return f"TLS handshake failed: {error}"


class _Unverified:
    """``options`` with ``verify`` off; without copying the model (default
    options may have none built, see anyprobe.lazy_model)."""

    __slots__ = ("_options",)
    verify = False

    def __init__(self, options: TlsOptions) -> None:
        self._options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(self._options, name)


async def peek_certificate(
    address: str, port: int, server_name: str | None, options: TlsOptions, ctx: CheckContext
) -> CertificateInfo | None:
    """The leaf certificate of ``address:port``, fetched without verifying it.

    For a precise summary after a verification failure (``certificate expired
    3 days ago``); None when it cannot be had within the check's deadline.
    """
    import anyio
    from anyio.streams.tls import TLSAttribute

    context = client_context(_Unverified(options), ctx)  # type: ignore[arg-type]
    with anyio.move_on_after(ctx.remaining()):
        try:
            # Not standard-compatible: closing must not wait for the server's close_notify.
            stream = await anyio.connect_tcp(
                address,
                port,
                ssl_context=context,
                tls_hostname=server_name or address,
                tls_standard_compatible=False,
            )
        except (OSError, ssl.SSLError, anyio.BrokenResourceError):
            return None
        async with stream:
            ssl_object = stream.extra(TLSAttribute.ssl_object)
            der = ssl_object.getpeercert(binary_form=True)
            try:
                return parse_certificate(der) if der else None
            except ValueError:
                return None
    return None


async def start_tls(
    stream: ByteStream,
    server_name: str,
    options: TlsOptions,
    ctx: CheckContext,
    *,
    alpn: Sequence[str] = (),
    peek_at: tuple[str, int] | None = None,
) -> tuple[TLSStream, TlsInfo]:
    """The TLS handshake every probe does: verified as ``options`` say, with
    SNI ``server_name`` (none for an IP address when verification is off).

    Returns the TLS stream and what the handshake showed. A failed handshake
    raises one :class:`~anyprobe.CheckFailed` saying why; with ``peek_at``
    (the address and port of a direct TLS connection) a certificate that
    failed verification is fetched again unverified, so the summary can say
    how long ago it expired or which names it covers.
    """
    import anyio
    from anyio.streams.tls import TLSAttribute, TLSStream

    context = client_context(options, ctx, alpn=alpn)
    sni = None if _is_ip_address(server_name) and not options.verify else server_name
    try:
        tls_stream = await TLSStream.wrap(
            stream,
            server_side=False,  # without a hostname anyio would take the server side
            hostname=sni,
            ssl_context=context,
            # Closing must not wait for the server's close_notify.
            standard_compatible=False,
        )
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        raise await _handshake_failure(exc, stream, server_name, options, ctx, peek_at) from None
    info = inspect_connection(tls_stream.extra(TLSAttribute.ssl_object))
    for line in info.describe():
        ctx.trace(line)
    return tls_stream, info


async def _handshake_failure(
    exc: BaseException,
    stream: ByteStream,
    server_name: str,
    options: TlsOptions,
    ctx: CheckContext,
    peek_at: tuple[str, int] | None,
) -> CheckFailed:
    import anyio

    from .net import describe_os_error, root_os_error

    limited = options.tls_min_version is not None or options.tls_max_version is not None
    # A server may hang up on a version it refuses instead of sending an alert.
    offered = f" (offered {_offered_versions(options)})" if limited else ""
    if isinstance(exc, anyio.EndOfStream):
        return CheckFailed(f"the server closed the connection during the TLS handshake{offered}")
    root = root_os_error(exc)
    error = find_ssl_error(exc)
    if error is None or (isinstance(root, OSError) and not isinstance(root, ssl.SSLError)):
        # A reset is a transport failure even when OpenSSL was waiting to read.
        return CheckFailed(f"{describe_os_error(root)} during the TLS handshake", error=root)
    summary = describe_tls_error(error, server_name)
    refused = _refused_versions(error, options)
    if refused is not None:
        summary = refused
    elif isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        summary += offered
    ctx.trace(f"TLS handshake failed: {summary}")
    if not isinstance(error, ssl.SSLCertVerificationError) or peek_at is None:
        return CheckFailed(summary, error=error)
    # Hang up first: a server that serves one client at a time may be waiting
    # for this connection to end before it accepts the next.
    with suppress(OSError, anyio.BrokenResourceError):
        await anyio.aclose_forcefully(stream)
    cert = await peek_certificate(*peek_at, server_name, options, ctx)
    if cert is None:
        return CheckFailed(summary, error=error)
    days = round(cert.expiry_days(), 2)
    status = Status.CRITICAL
    if error.verify_code == 10:  # expired
        status, summary = expiry_verdict(days, options)
    elif error.verify_code in (62, 64):  # the name does not match
        summary += f" (it names {', '.join(cert.sans) or cert.subject})"
    ctx.trace(
        f"unverified certificate: {cert.subject} issued by {cert.issuer}, "
        f"valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}"
    )
    return CheckFailed(summary, status=status, error=error, metrics={"cert_expiry_days": days})


_VERSION_REASONS = {
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol version alert",
    "UNSUPPORTED_PROTOCOL": "it offers another version",
    "NO_PROTOCOLS_AVAILABLE": "no version in common",
}


def _offered_versions(options: TlsOptions) -> str:
    """The TLS versions the client offers under ``options``, as a user reads them
    (``TLS 1.0``, ``TLS 1.2 to 1.3``)."""
    high = options.tls_max_version or "1.3"
    low = options.tls_min_version or min("1.2", high)
    return f"TLS {low}" if low == high else f"TLS {low} to {high}"


def _refused_versions(error: ssl.SSLError, options: TlsOptions) -> str | None:
    """With ``tls_min_version`` / ``tls_max_version``, a version refusal names
    the versions offered; None for any other failure."""
    if options.tls_min_version is None and options.tls_max_version is None:
        return None
    why = _VERSION_REASONS.get(error.reason or "")
    if why is None:
        return None
    return f"TLS handshake failed: the server refuses {_offered_versions(options)} ({why})"


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
