"""Header rules shared by the probes that send HTTP headers (http, ws).

A module of its own, so that a ``ws://`` check does not import the HTTP probe.
"""

from __future__ import annotations

import re

import anyprobe

#: An HTTP token (RFC 9110): a method, a header name, a WebSocket subprotocol.
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def header_value_ok(value: str) -> bool:
    """Whether ``value`` can go in a header: no control character but tab."""
    return not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` if every name is a token and every value can be sent."""
    for name, text in headers.items():
        if not TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name")
        if not header_value_ok(text):
            raise ValueError(f"header {name}: control characters are not allowed in a value")
    return headers


def check_secret_header(secret: anyprobe.SecretEnv, where: str = "") -> anyprobe.SecretEnv:
    """``secret`` if its value can go in a header; the error names the variable
    (after ``where``), never the value."""
    if not header_value_ok(secret.get_secret_value()):
        raise ValueError(f"{where}environment variable {secret.variable} holds control characters")
    return secret


def check_secret_headers(
    headers: dict[str, anyprobe.SecretEnv],
) -> dict[str, anyprobe.SecretEnv]:
    """``header_env``: every name a token, every value one a header can hold."""
    for name, secret in headers.items():
        if not TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name")
        check_secret_header(secret, f"header {name}: ")
    return headers
