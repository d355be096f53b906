"""The gRPC probe: ``grpc://HOST:PORT`` and ``grpcs://HOST:PORT``.

A check calls the standard health service, ``grpc.health.v1.Health/Check``,
once: it connects (phases ``resolve`` and ``connect``), for ``grpcs://``
does the TLS handshake offering ALPN ``h2`` (phase ``tls``, with the shared
certificate checks of :mod:`anyprobe.tls`), then sends the unary call over
HTTP/2 with h2 on the connection's stream and reads the answer (phase
``rpc``). ``SERVING`` is ok; ``NOT_SERVING``, ``SERVICE_UNKNOWN``,
``UNKNOWN``, a gRPC status other than ``OK`` and an answer that is not gRPC
are critical, the summary saying what came.

The two protobuf messages are encoded by hand (see ``_grpc_wire``): neither
grpcio nor protobuf is needed, and the probe runs on asyncio and trio alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, unquote

from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe import CheckFailed, Connection, show_bytes
from anyprobe.net import IpFamily
from anyprobe.plugins._grpc_wire import (
    WireError,
    encode_health_request,
    frame_message,
    grpc_status_name,
    parse_health_response,
    serving_status_name,
    unframe_message,
)
from anyprobe.tls import CERTIFICATE_MODULES, TlsOptions, expiry_verdict

__all__ = ["GrpcOptions", "GrpcProbe"]

HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
#: ServingStatus SERVING: the only ok answer.
SERVING = 1
#: A metadata key gRPC allows (lower case; ``grpc-`` keys are the protocol's own).
_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")
#: Keys the probe sets itself, or that HTTP/2 forbids.
_RESERVED_KEYS = frozenset(
    {"content-type", "te", "user-agent", "host", "connection", "keep-alive", "upgrade"}
)
#: Characters of the grpc-message quoted in a summary before it is cut.
SHOWN_MESSAGE = 200
INSTALL = "anyprobe[http2]"


def _check_metadata_key(key: str) -> None:
    if not _METADATA_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a metadata key (lower-case letters, digits, - _ .)")
    if key.startswith("grpc-") or key in _RESERVED_KEYS:
        raise ValueError(f"metadata key {key!r} is reserved by gRPC or HTTP/2")
    if key.endswith("-bin"):
        raise ValueError(f"metadata key {key!r}: binary (-bin) metadata is not supported")


def _metadata_value_ok(value: str) -> bool:
    return all(" " <= char <= "~" for char in value)


class GrpcOptions(TlsOptions, anyprobe.AddressOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    service: str = Field(
        "",
        description="Service whose health is asked for; empty (the default) asks for "
        "the server as a whole.",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Request metadata (sent as HTTP/2 headers), e.g. {x-tenant = 'blue'}; "
        "keys are lower-cased. Values of credential keys (authorization, *token*...) "
        "are never shown.",
    )
    metadata_env: dict[str, anyprobe.SecretEnv] = Field(
        default_factory=dict,
        description="Secret request metadata: key -> environment variable holding its "
        "value, e.g. {authorization = 'GRPC_TOKEN'}. Never shown in any output.",
    )
    max_response_bytes: int = Field(
        65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Most bytes read from the server (HTTP/2 frames included) before the "
        "check gives up, critical.",
    )

    @field_validator("metadata", mode="before")
    @classmethod
    def _lower_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(key).lower(): item for key, item in value.items()}
        return value

    @field_validator("metadata")
    @classmethod
    def _valid_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            _check_metadata_key(key)
            if not _metadata_value_ok(text):
                raise ValueError(f"metadata {key}: only printable ASCII is allowed in a value")
        return value

    @field_validator("metadata_env", mode="before")
    @classmethod
    def _read_secret_metadata(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = {str(key).lower(): item for key, item in value.items()}
        return anyprobe.SecretEnv.read_each(value, "metadata")

    @field_validator("metadata_env")
    @classmethod
    def _valid_secret_metadata(
        cls, value: dict[str, anyprobe.SecretEnv]
    ) -> dict[str, anyprobe.SecretEnv]:
        for key, secret in value.items():
            _check_metadata_key(key)
            if not _metadata_value_ok(secret.get_secret_value()):
                raise ValueError(
                    f"metadata {key}: only printable ASCII is allowed in ${secret.variable}'s value"
                )
        return value

    @model_validator(mode="after")
    def _one_value_a_key(self) -> GrpcOptions:
        both = sorted(set(self.metadata) & set(self.metadata_env))
        if both:
            raise ValueError(f"metadata key {both[0]!r} is in both metadata and metadata_env")
        return self

    @field_validator("service")
    @classmethod
    def _printable_service(cls, value: str) -> str:
        if anyprobe.find_control(value) is not None:
            raise ValueError("control characters are not allowed in a service name")
        return value


class GrpcProbe(anyprobe.Probe[GrpcOptions]):
    """Call grpc.health.v1.Health/Check over HTTP/2, with or without TLS."""

    name = "grpc"
    schemes = ("grpc", "grpcs")
    Options = GrpcOptions
    description = "gRPC health check (grpc.health.v1.Health/Check), with TLS for grpcs://."

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        anyprobe.check_url_shape(url, text)  # grpc://HOST:PORT, nothing more
        return super().validate_url(url, text)

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """h2 for every check; certificate parsing when a target is grpcs://."""
        import importlib

        anyprobe.require("h2.connection", needed_for="grpc:// checks", install=INSTALL)
        if any(t.url[:6].lower() == "grpcs:" for t in targets):
            for module in ("anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: GrpcOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        secure = target.url[:6].lower() == "grpcs:"
        async with ctx.connect(
            target.host,
            target.port,
            ip_family=options.ip_family,
            tls=options if secure else None,
            alpn=("h2",) if secure else (),
        ) as conn:
            ctx.metrics.update(address=conn.address, port=target.port)
            if conn.tls is not None:
                ctx.metrics.update(conn.tls.metrics())
                if conn.tls.alpn != "h2":
                    ctx.trace(f"the server chose ALPN {conn.tls.alpn or 'none'}, not h2")
            authority = _authority(target.host, target.port)
            with ctx.phase("rpc"):
                answer = await call_health_check(
                    conn, authority, "https" if secure else "http", options, ctx
                )
        return _outcome(conn, answer, options, ctx)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the call ---------------------------------------------------------------------


class Answer:
    """What came back: HTTP status, headers and trailers (lower-case names), body."""

    __slots__ = ("body", "headers", "status", "trailers")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] = {}
        self.body = bytearray()

    def field(self, name: str) -> str | None:
        """A trailer, or a header (a Trailers-Only answer has its status there)."""
        return self.trailers.get(name, self.headers.get(name))


def _request_headers(
    authority: str, scheme: str, options: GrpcOptions, ctx: anyprobe.CheckContext
) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", HEALTH_CHECK_PATH),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", f"anyprobe/{anyprobe.__version__}"),
        # The server may stop work the probe will not wait for.
        ("grpc-timeout", f"{max(1, min(int(ctx.remaining() * 1000), 99_999_999))}m"),
    ]
    headers += options.metadata.items()
    headers += [(key, secret.get_secret_value()) for key, secret in options.metadata_env.items()]
    return headers


async def call_health_check(
    conn: Connection,
    authority: str,
    scheme: str,
    options: GrpcOptions,
    ctx: anyprobe.CheckContext,
) -> Answer:
    """Send the Check call on a fresh HTTP/2 connection; the answer, read whole."""
    import h2.config
    import h2.connection
    import h2.exceptions

    h2c = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    h2c.initiate_connection()
    stream_id = h2c.get_next_available_stream_id()
    h2c.send_headers(stream_id, _request_headers(authority, scheme, options, ctx))
    h2c.send_data(stream_id, frame_message(encode_health_request(options.service)), end_stream=True)
    ctx.trace(f"> POST {HEALTH_CHECK_PATH} service={options.service!r}")
    await conn.send(h2c.data_to_send())
    answer = Answer()
    received = bytearray()
    total = 0
    while True:
        data = await conn.receive()
        if not data:
            raise _closed_early(answer, received)
        total += len(data)
        if total > options.max_response_bytes:
            raise CheckFailed(
                f"the server sent more than max_response_bytes ({options.max_response_bytes}) "
                "without ending its answer"
            )
        if len(received) < 64:
            received += data[: 64 - len(received)]
            # A server's first frame is SETTINGS (type 4): anything else (an
            # HTTP/1.1 status line) is not HTTP/2, whatever h2 would make of it.
            if len(received) >= 4 and received[3] != 4:
                raise CheckFailed(f"not an HTTP/2 answer: got {show_bytes(received)}")
        try:
            events = h2c.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise CheckFailed(
                f"not an HTTP/2 answer: got {show_bytes(received)}", error=exc
            ) from None
        if _take_events(h2c, events, stream_id, answer, ctx):
            break
        outgoing = h2c.data_to_send()
        if outgoing:
            await conn.send(outgoing)
    return answer


def _take_events(
    h2c: Any,
    events: list[Any],
    stream_id: int,
    answer: Answer,
    ctx: anyprobe.CheckContext,
) -> bool:
    """Fold h2 events into ``answer``; True once the response has ended."""
    import h2.events

    for event in events:
        if isinstance(event, h2.events.ResponseReceived):
            answer.headers = _decode_headers(event.headers)
            answer.status = int(answer.headers.get(":status", "0") or 0)
            ctx.trace(f"< HTTP/2 {answer.status} {answer.headers.get('content-type', '')}")
        elif isinstance(event, h2.events.DataReceived):
            answer.body += event.data
            h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            answer.trailers = _decode_headers(event.headers)
        elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
            raise CheckFailed(f"the server reset the stream ({_h2_error(event.error_code)})")
        elif isinstance(event, h2.events.ConnectionTerminated):
            if event.last_stream_id is None or event.last_stream_id < stream_id:
                raise CheckFailed(
                    f"the server ended the connection (GOAWAY {_h2_error(event.error_code)})"
                )
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
            return True
    return False


def _h2_error(code: Any) -> str:
    """An HTTP/2 error code by name: ``REFUSED_STREAM``, or ``error 99``."""
    return str(getattr(code, "name", f"error {code}"))


def _decode_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    return {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for name, value in headers
    }


def _closed_early(answer: Answer, received: bytearray) -> CheckFailed:
    if answer.status:
        return CheckFailed("the server closed the connection before the end of the answer")
    if received:
        return CheckFailed(f"not an HTTP/2 answer: got {show_bytes(received)}")
    return CheckFailed("the server closed the connection without answering")


# -- the verdict ----------------------------------------------------------------------


def _grpc_verdict(answer: Answer, ctx: anyprobe.CheckContext) -> tuple[anyprobe.Status, str]:
    """The health answer's verdict and what the summary says of it."""
    content_type = answer.headers.get("content-type", "")
    if answer.status != 200 or not content_type.startswith("application/grpc"):
        raise CheckFailed(
            f"not a gRPC answer: HTTP {answer.status}, "
            f"content-type {anyprobe.escape_controls(content_type) or 'none'}",
            metrics={"http_status": answer.status},
        )
    code_text = answer.field("grpc-status")
    if code_text is None or not code_text.isdigit():
        raise CheckFailed("the answer has no grpc-status")
    code = int(code_text)
    ctx.metrics["grpc_status"] = code
    if code != 0:
        message = anyprobe.escape_controls(unquote(answer.field("grpc-message") or ""))
        if len(message) > SHOWN_MESSAGE:
            message = message[:SHOWN_MESSAGE] + "..."
        said = f": {message}" if message else ""
        return anyprobe.Status.CRITICAL, f"grpc-status {grpc_status_name(code)} ({code}){said}"
    try:
        serving = parse_health_response(unframe_message(bytes(answer.body)))
    except WireError as exc:
        raise CheckFailed(f"not a health check response: {exc}", error=exc) from None
    ctx.metrics["serving_status"] = serving
    status = anyprobe.Status.OK if serving == SERVING else anyprobe.Status.CRITICAL
    return status, serving_status_name(serving)


def _outcome(
    conn: Connection, answer: Answer, options: GrpcOptions, ctx: anyprobe.CheckContext
) -> anyprobe.Outcome:
    status, said = _grpc_verdict(answer, ctx)
    service = f"service {options.service!r}" if options.service else "the server"
    took = ctx.phases.get("rpc", 0.0) * 1000
    how = f" over {conn.tls.version or 'TLS'}" if conn.tls is not None else ""
    parts = [f"{said} for {service} at {conn.where}{how} in {took:.1f} ms"]
    details: dict[str, Any] = {}
    if conn.tls is not None:
        details["tls"] = conn.tls.details()
        days = conn.tls.cert_expiry_days()
        if days is not None:
            expiry_status, verdict = expiry_verdict(days, options)
            parts.append(verdict)
            status = anyprobe.Status.worst((status, expiry_status))
    return anyprobe.Outcome(status, "; ".join(parts), details=details)


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(GrpcProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from anyprobe.plugins._demo_grpc import demo_services

    register(demo_services)
