"""An HTTP server with large and odd bodies, :class:`anyprobe.testing.HttpServer`
in a thread with its own event loop, for tests that run the CLI in a subprocess
(so it answers whatever loop, if any, the test runs).

Routes of ``body_server``:

- ``/big``: 10 MiB (the default ``max_body_bytes``) of lines of text, no ``ERROR``;
- ``/noise``: 10 MiB of seeded random ``a``, ``b``, spaces and newlines, on which
  RE2's fast automaton gives up for ``SLOW_PATTERN``, whose search then takes
  many minutes (linear, but 150 us a byte);
- ``/noise-small``: the first 16 KiB of ``/noise`` (a search of some seconds, for a
  test process that must not keep an abandoned search running for minutes);
- ``/big-json``: a JSON document of about 1 MiB (``status`` is ``UP``);
- ``/small``: ``all is well`` (a short body);
- ``/latin1``: bytes that are not UTF-8 (``caf\\xe9 ok``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest

from anyprobe.testing import HttpReply, HttpServer

__all__ = ["body_server"]

BIG_BYTES = 10 * 1024 * 1024
_LINE = b"2026-12-03T10:00:00 INFO all is well with this service today, nothing to see\n"
BIG_BODY = (_LINE * (BIG_BYTES // len(_LINE) + 1))[:BIG_BYTES]
_NOISE_TABLE = bytes(b"ab \n"[i % 4] for i in range(256))
NOISE_BODY = random.Random(12).randbytes(BIG_BYTES).translate(_NOISE_TABLE)
#: A pattern whose search of ``/noise`` takes minutes: only a timeout ends it.
SLOW_PATTERN = r"(\w+\s*){1000}z"
BIG_JSON = json.dumps(
    {"status": "UP", "items": [{"id": i, "name": f"item-{i}", "ok": True} for i in range(25000)]}
).encode()
BODIES = {
    "/big": BIG_BODY,
    "/noise": NOISE_BODY,
    "/noise-small": NOISE_BODY[: 16 * 1024],
    "/big-json": BIG_JSON,
    "/small": b"all is well\n",
    "/latin1": b"caf\xe9 ok\n",
}


#: The server: ``.url(path)``, and ``.wait_sent(path, timeout)`` once a whole body
#: of ``path`` has been sent.
BodyServer = HttpServer


@pytest.fixture
def body_server(anyprobe_http_server: Callable[..., HttpServer]) -> BodyServer:
    """The server on 127.0.0.1 (an ephemeral port), stopped at teardown."""
    routes = {
        path: HttpReply(200, body, content_type="text/plain") for path, body in BODIES.items()
    }
    return anyprobe_http_server(routes)
