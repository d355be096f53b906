"""What the gRPC probe puts on the wire, and reads back, without protobuf.

The health check's two messages are one field each, so they are encoded
and decoded here by hand (protobuf's varint and length-delimited wire
types), with strict bounds: whatever a server sends gives a value or a
:class:`WireError` saying what is wrong, never an exception of another kind.
"""

from __future__ import annotations

__all__ = [
    "GRPC_STATUS_NAMES",
    "SERVING_STATUS_NAMES",
    "WireError",
    "encode_health_request",
    "frame_message",
    "grpc_status_name",
    "parse_health_request",
    "parse_health_response",
    "serving_status_name",
    "unframe_message",
]

#: The message header: a compressed flag (1 byte) and a big-endian length (4).
MESSAGE_HEADER = 5
#: Longest varint (a 64-bit value takes at most 10 bytes).
MAX_VARINT_BYTES = 10

#: grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

#: The gRPC status codes (grpc/doc/statuscodes.md).
GRPC_STATUS_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class WireError(ValueError):
    """What a server sent is not a valid gRPC health answer (the message says why)."""


def serving_status_name(value: int) -> str:
    """``SERVING``, or ``status 7`` for a value the protocol does not define."""
    return SERVING_STATUS_NAMES.get(value, f"status {value}")


def grpc_status_name(value: int) -> str:
    """``UNIMPLEMENTED``, or ``code 42`` for a code the protocol does not define."""
    return GRPC_STATUS_NAMES.get(value, f"code {value}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and where the next field starts."""
    value = 0
    for shift in range(MAX_VARINT_BYTES):
        if at + shift >= len(data):
            raise WireError("the message ends inside a number")
        byte = data[at + shift]
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            return value, at + shift + 1
    raise WireError(f"a number longer than {MAX_VARINT_BYTES} bytes")


def encode_health_request(service: str) -> bytes:
    """``HealthCheckRequest {string service = 1}`` (empty: no field at all)."""
    if not service:
        return b""
    name = service.encode("utf-8")
    return b"\x0a" + _varint(len(name)) + name


def parse_health_response(message: bytes) -> int:
    """The ``status`` of a ``HealthCheckResponse`` (0, UNKNOWN, when absent).

    Other fields are skipped, as protobuf does with fields it does not know;
    a field of a wire type that cannot be skipped safely is refused.
    """
    status = 0
    at = 0
    while at < len(message):
        key, at = _read_varint(message, at)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("a field numbered 0")
        if wire_type == 0:  # varint
            value, at = _read_varint(message, at)
            if number == 1:
                # An enum is an int32: negative values come as 64-bit two's complement.
                status = value - (1 << 64) if value >= 1 << 63 else value
        elif wire_type == 2:  # length-delimited
            size, at = _read_varint(message, at)
            if at + size > len(message):
                raise WireError(f"a field of {size} bytes where {len(message) - at} remain")
            if number == 1:
                raise WireError("status is not a number")
            at += size
        elif wire_type in (1, 5):  # fixed 64 or 32 bits
            at += 8 if wire_type == 1 else 4
            if at > len(message) or number == 1:
                raise WireError("status is not a number" if number == 1 else "a cut field")
        else:
            raise WireError(f"wire type {wire_type} in a health response")
    return status


def frame_message(message: bytes) -> bytes:
    """A gRPC length-prefixed message, not compressed."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe_message(body: bytes) -> bytes:
    """The one message in a unary response's body.

    Refuses a body that is not exactly one whole, uncompressed message (the
    probe asks for no compression, so a compressed one is the server's
    fault).
    """
    if len(body) < MESSAGE_HEADER:
        raise WireError(f"a response of {len(body)} bytes, shorter than a message header")
    flag = body[0]
    size = int.from_bytes(body[1:MESSAGE_HEADER], "big")
    if flag == 1:
        raise WireError("a compressed message, though none was asked for")
    if flag != 0:
        raise WireError(f"a message flag of {flag}")
    end = MESSAGE_HEADER + size
    if len(body) < end:
        raise WireError(f"a message of {size} bytes cut after {len(body) - MESSAGE_HEADER}")
    if len(body) > end:
        raise WireError(f"{len(body) - end} bytes after the message")
    return body[MESSAGE_HEADER:end]


def parse_health_request(message: bytes) -> str:
    """The ``service`` of a ``HealthCheckRequest`` ("" when absent): for the demo server."""
    service = b""
    at = 0
    while at < len(message):
        key, at = _read_varint(message, at)
        if key & 7 == 2:
            size, at = _read_varint(message, at)
            if at + size > len(message):
                raise WireError("a cut field")
            if key >> 3 == 1:
                service = message[at : at + size]
            at += size
        elif key & 7 == 0:
            _, at = _read_varint(message, at)
        else:
            raise WireError(f"wire type {key & 7} in a health request")
    return service.decode("utf-8", errors="replace")
