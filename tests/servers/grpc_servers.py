"""Real gRPC servers on loopback for the grpc:// tests (grpcio's own server).

grpcio runs its server on its own threads, so a server started here serves
a check on either backend. Each server records the metadata of the calls it
answered, for the tests that check what reached it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__: list[str] = []  # no fixtures: grpcio is optional, imported when a server starts

#: grpc.health.v1 ServingStatus values, for ``statuses``.
SERVING = 1
NOT_SERVING = 2


@dataclass
class GrpcServer:
    port: int
    health: Any
    #: The invocation metadata of each call, as (key, value) pairs.
    calls: list[dict[str, str]] = field(default_factory=list)


def _recorder(calls: list[dict[str, str]]) -> Any:
    """A server interceptor that records each call's metadata in ``calls``."""
    import grpc

    class RecordMetadata(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            calls.append(dict(handler_call_details.invocation_metadata))
            return continuation(handler_call_details)

    return RecordMetadata()


@contextmanager
def grpc_server(
    *,
    with_health: bool = True,
    statuses: dict[str, int] | None = None,
    tls: tuple[bytes, bytes] | None = None,
    check: Callable[[bytes, Any], bytes] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[GrpcServer]:
    """A gRPC server on ``host`` (127.0.0.1, or ``[::1]``); ``statuses`` sets
    the health of each service ("" is the server as a whole), ``tls`` is
    (certificate chain, key) in PEM.
    ``check(request, context)``, given, answers Health/Check instead of
    grpcio's servicer, with the serialized messages as bytes."""
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    calls: list[dict[str, str]] = []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[_recorder(calls)])
    servicer = None
    if check is not None:
        method = grpc.unary_unary_rpc_method_handler(check)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": method}),)
        )
    elif with_health:
        servicer = health.HealthServicer()
        for service, status in (statuses or {}).items():
            servicer.set(service, status)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if tls is not None:
        chain, key = tls
        credentials = grpc.ssl_server_credentials([(key, chain)])
        port = server.add_secure_port(f"{host}:0", credentials)
    else:
        port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        yield GrpcServer(port, servicer, calls)
    finally:
        server.stop(grace=None).wait(5)
