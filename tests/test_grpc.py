"""The gRPC probe: grpc.health.v1.Health/Check against grpcio's own server on
loopback (plain and TLS), and against servers that are not gRPC, on both
backends."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.abc
import pytest

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status
from anyprobe.plugins._grpc_wire import (
    WireError,
    encode_health_request,
    frame_message,
    parse_health_response,
    unframe_message,
)
from tests.servers.banner import TlsCa, serve_tcp
from tests.servers.grpc_servers import NOT_SERVING, SERVING, GrpcServer, grpc_server
from tests.servers.http import cert_files, serve_h2

grpc = pytest.importorskip("grpc", reason="the grpc:// tests need grpcio (pip install grpcio)")
pytest.importorskip(
    "grpc_health.v1.health",
    reason="the grpc:// tests need grpcio-health-checking (pip install grpcio-health-checking)",
)


pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, **options: Any
) -> Result:
    [result] = await anyprobe.check([url], options=options, manager=manager, timeout=seconds)
    return result


@pytest.fixture
def health_server() -> Iterator[GrpcServer]:
    with grpc_server(statuses={"": SERVING, "up": SERVING, "down": NOT_SERVING}) as server:
        yield server


@pytest.fixture
def tls_health_server(tls_ca: TlsCa) -> Iterator[GrpcServer]:
    leaf = tls_ca.ca.issue_cert("localhost", "127.0.0.1")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    with grpc_server(statuses={"": SERVING}, tls=(chain, key)) as server:
        yield server


# -- verdicts -----------------------------------------------------------------------


async def test_serving_server_is_ok(
    anyio_backend: str, manager: PluginManager, health_server: GrpcServer
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{health_server.port}")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"SERVING for the server at 127.0.0.1:{health_server.port}")
    assert set(result.phases) == {"resolve", "connect", "rpc"}
    assert result.metrics["serving_status"] == 1
    assert result.metrics["grpc_status"] == 0


async def test_serving_service_is_ok(
    anyio_backend: str, manager: PluginManager, health_server: GrpcServer
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{health_server.port}", service="up")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("SERVING for service 'up' at ")


async def test_not_serving_is_critical(
    anyio_backend: str, manager: PluginManager, health_server: GrpcServer
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{health_server.port}", service="down")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("NOT_SERVING for service 'down' at ")
    assert result.metrics["serving_status"] == 2


async def test_unknown_service_is_critical_with_grpc_status(
    anyio_backend: str, manager: PluginManager, health_server: GrpcServer
) -> None:
    # grpcio's servicer answers NOT_FOUND for a service it was never told of.
    result = await check_one(manager, f"grpc://127.0.0.1:{health_server.port}", service="nope")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("grpc-status NOT_FOUND (5) for service 'nope' at ")
    assert result.metrics["grpc_status"] == 5
    assert "serving_status" not in result.metrics


async def test_service_changing_to_not_serving_is_seen(
    anyio_backend: str, manager: PluginManager, health_server: GrpcServer
) -> None:
    url = f"grpc://127.0.0.1:{health_server.port}"
    assert (await check_one(manager, url, service="up")).status is Status.OK
    health_server.health.set("up", NOT_SERVING)
    result = await check_one(manager, url, service="up")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("NOT_SERVING for service 'up'")


async def test_server_without_health_service_is_unimplemented(
    anyio_backend: str, manager: PluginManager
) -> None:
    with grpc_server(with_health=False) as server:
        result = await check_one(manager, f"grpc://127.0.0.1:{server.port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("grpc-status UNIMPLEMENTED (12): Method not found!")
    assert result.metrics["grpc_status"] == 12


async def test_metadata_reaches_the_server_and_secrets_stay_hidden(
    anyio_backend: str,
    manager: PluginManager,
    health_server: GrpcServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRPC_TEST_TOKEN", "tok-123456")
    [result] = await anyprobe.check(
        [f"grpc://127.0.0.1:{health_server.port}"],
        options={
            "metadata": {"X-Tenant": "blue", "authorization": "Bearer hunter22"},
            "metadata_env": {"x-api-token": "GRPC_TEST_TOKEN"},
        },
        manager=manager,
        timeout=5,
        explain=True,
    )
    assert result.status is Status.OK, result.summary
    [call] = health_server.calls
    assert call["x-tenant"] == "blue"
    assert call["authorization"] == "Bearer hunter22"
    assert call["x-api-token"] == "tok-123456"
    shown = repr(result) + "".join(event.message for event in result.trace)
    assert "hunter22" not in shown and "tok-123456" not in shown


async def test_grpc_message_is_decoded_and_escaped(
    anyio_backend: str, manager: PluginManager
) -> None:
    def draining(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.UNAVAILABLE, "draining: 100% done\nbye")
        raise AssertionError("abort() raises")

    with grpc_server(check=draining) as server:
        result = await check_one(manager, f"grpc://127.0.0.1:{server.port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("grpc-status UNAVAILABLE (14): draining: 100% done\\nbye for ")
    assert result.metrics["grpc_status"] == 14


@pytest.mark.parametrize(
    ("answer", "summary"),
    [
        (b"\x08\x03", "SERVICE_UNKNOWN for the server at "),
        (b"\x08\x00", "UNKNOWN for the server at "),
        (b"", "UNKNOWN for the server at "),
        (b"\x08\x07", "status 7 for the server at "),
        (b"\x0a\x01x", "not a health check response: status is not a number"),
        (b"\x08", "not a health check response: the message ends inside a number"),
    ],
)
async def test_health_answers_other_than_serving_are_critical(
    anyio_backend: str, manager: PluginManager, answer: bytes, summary: str
) -> None:
    with grpc_server(check=lambda request, context: answer) as server:
        result = await check_one(manager, f"grpc://127.0.0.1:{server.port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(summary), result.summary


async def test_ipv6_loopback_with_ip_family(anyio_backend: str, manager: PluginManager) -> None:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with grpc_server(statuses={"": SERVING}, host="[::1]") as server:
        result = await check_one(manager, f"grpc://[::1]:{server.port}", ip_family="ipv6")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"SERVING for the server at [::1]:{server.port}")
    assert result.metrics["address"] == "::1"


# -- TLS ---------------------------------------------------------------------------------


async def test_grpcs_with_trusted_certificate_is_ok(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa, tls_health_server: GrpcServer
) -> None:
    result = await check_one(
        manager, f"grpcs://localhost:{tls_health_server.port}", ca_file=str(tls_ca.ca_file)
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("SERVING for the server at ")
    assert " over TLSv1." in result.summary
    assert "tls" in result.phases
    assert result.metrics["serving_status"] == 1


async def test_grpcs_with_untrusted_certificate_is_critical(
    anyio_backend: str, manager: PluginManager, tls_health_server: GrpcServer
) -> None:
    result = await check_one(manager, f"grpcs://localhost:{tls_health_server.port}")
    assert result.status is Status.CRITICAL
    assert "certificate" in result.summary
    assert result.error is not None and result.error.phase == "tls"


async def test_grpcs_certificate_near_expiry_is_a_warning(
    anyio_backend: str, manager: PluginManager, tls_ca: TlsCa
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    leaf = tls_ca.ca.issue_cert(
        "localhost",
        not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=5),
    )
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    with grpc_server(statuses={"": SERVING}, tls=(chain, leaf.private_key_pem.bytes())) as server:
        result = await check_one(
            manager,
            f"grpcs://localhost:{server.port}",
            ca_file=str(tls_ca.ca_file),
            cert_expiry_warning_days=10,
            cert_expiry_critical_days=2,
        )
    assert result.status is Status.WARNING, result.summary
    assert result.summary.startswith("SERVING for the server at ")
    assert "; certificate expires in " in result.summary


# -- not gRPC, or no answer -------------------------------------------------------------


async def test_refused_port_is_critical(
    anyio_backend: str, manager: PluginManager, closed_port: int
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{closed_port}")
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_silent_server_times_out_in_rpc(
    anyio_backend: str, manager: PluginManager, quiet_port: int
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{quiet_port}", seconds=0.5)
    assert result.status is Status.CRITICAL
    assert result.error is not None and result.error.phase == "rpc"
    assert "timed out" in result.summary


async def test_silent_server_times_out_in_tls_for_grpcs(
    anyio_backend: str, manager: PluginManager, quiet_port: int
) -> None:
    result = await check_one(manager, f"grpcs://127.0.0.1:{quiet_port}", seconds=0.5)
    assert result.status is Status.CRITICAL
    assert result.error is not None and result.error.phase == "tls"


async def test_http1_server_is_not_grpc(
    anyio_backend: str, manager: PluginManager, not_tls_port: int
) -> None:
    result = await check_one(manager, f"grpc://127.0.0.1:{not_tls_port}")
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("not an HTTP/2 answer: got 'HTTP/1.1 400 Bad Request")
    assert result.error is not None and result.error.phase == "rpc"


async def test_http2_server_that_is_not_grpc(
    anyio_backend: str, manager: PluginManager, http_ca: Any, http_ca_file: str, tmp_path: Path
) -> None:
    certfile, keyfile = cert_files(http_ca, tmp_path)
    async with serve_h2(certfile, keyfile, anyio_backend) as port:
        result = await check_one(manager, f"grpcs://localhost:{port}", ca_file=http_ca_file)
    assert result.status is Status.CRITICAL
    assert result.summary == "not a gRPC answer: HTTP 200, content-type none"
    assert result.metrics["http_status"] == 200


async def test_endless_answer_stops_at_max_response_bytes(
    anyio_backend: str, manager: PluginManager
) -> None:
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"

    async def chatty(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.send(settings)
        for _ in range(1000):  # 17 000 bytes of PING frames, never an answer
            await stream.send(ping)

    with serve_tcp(chatty) as port:
        result = await check_one(manager, f"grpc://127.0.0.1:{port}", max_response_bytes=1024)
    assert result.status is Status.CRITICAL
    assert result.summary == (
        "the server sent more than max_response_bytes (1024) without ending its answer"
    )
    assert result.error is not None and result.error.phase == "rpc"


# -- options and URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metadata": {"grpc-timeout": "1S"}}, "reserved"),
        ({"metadata": {"te": "x"}}, "reserved"),
        ({"metadata": {"x y": "1"}}, "not a metadata key"),
        ({"metadata": {"trace-bin": "AAEC"}}, "binary"),
        ({"metadata": {"x-a": "line\nbreak"}}, "printable ASCII"),
        ({"service": "a\x1bb"}, "control characters"),
        ({"max_response_bytes": 10}, "max_response_bytes"),
        (
            {"metadata": {"X-Token": "a"}, "metadata_env": {"x-token": "HOME"}},
            "in both metadata and metadata_env",
        ),
    ],
)
def test_bad_options_are_usage_errors(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        anyprobe.prepare(["grpc://127.0.0.1:1"], options=options, manager=manager)


@pytest.mark.parametrize(
    ("url", "message"),
    [("grpc://127.0.0.1", "port"), ("grpc://127.0.0.1:50051/path", "path")],
)
def test_bad_urls_are_usage_errors(manager: PluginManager, url: str, message: str) -> None:
    with pytest.raises(anyprobe.TargetError, match=message):
        anyprobe.prepare([url], manager=manager)


# -- the hand-made protobuf ---------------------------------------------------------------


def test_request_encoding_matches_protobuf() -> None:
    from grpc_health.v1 import health_pb2

    for service in ("", "up", "x" * 300, "сервис"):
        expected = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        assert encode_health_request(service) == expected


def test_response_decoding_matches_protobuf() -> None:
    from grpc_health.v1 import health_pb2

    for status in (0, 1, 2, 3):
        message = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert parse_health_response(unframe_message(frame_message(message))) == status


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x00",
        b"\x01\x00\x00\x00\x02\x08\x01",
        b"\x00\x00\x00\x00\x05\x08\x01",
        b"\x00\x00\x00\x00\x02\x08\x01\x00",
        b"\x00\x00\x00\x00\x01\x08",
        b"\x00\x00\x00\x00\x0b\x08" + b"\xff" * 10,
        b"\x00\x00\x00\x00\x03\x0a\x05a",
        b"\x00\x00\x00\x00\x01\x0f",
    ],
)
def test_malformed_responses_are_wire_errors(body: bytes) -> None:
    with pytest.raises(WireError):
        parse_health_response(unframe_message(body))


# -- demo ---------------------------------------------------------------------------------


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins._demo_grpc import demo_services

    async with demo_services() as checks:
        assert len(checks) == 2
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)
        unknown = await check_one(manager, checks[0].url, service="nope")
    assert unknown.summary.startswith("grpc-status NOT_FOUND (5): unknown service")


def test_request_decoding_matches_protobuf() -> None:
    from grpc_health.v1 import health_pb2

    from anyprobe.plugins._grpc_wire import parse_health_request

    for service in ("", "up", "x" * 300):
        message = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        assert parse_health_request(message) == service


# -- dependencies and masking ---------------------------------------------------------------


def test_missing_h2_is_one_line_saying_what_to_install(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "h2.connection", None)
    probe = manager.probe_for_scheme("grpc")
    [target] = anyprobe.prepare(["grpc://127.0.0.1:1"], manager=manager).targets
    with pytest.raises(anyprobe.MissingDependency, match=r"pip install 'anyprobe\[http2\]'"):
        probe.load_dependencies([target])


def test_credential_metadata_is_masked_in_shown_options() -> None:
    from anyprobe.masking import MASK, Masker
    from anyprobe.plugins.grpc import GrpcOptions

    options = GrpcOptions(metadata={"Authorization": "Bearer hunter22", "x-tenant": "blue"})
    shown = Masker().options(GrpcOptions, options.model_dump())
    assert shown["metadata"] == {"authorization": MASK, "x-tenant": "blue"}
