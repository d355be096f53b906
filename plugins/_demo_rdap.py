"""The rdap probe's rows of ``anyprobe demo``: a local RDAP server (anyprobe's
small HTTP/1.1 server) that knows two domains of the reserved ``.test`` TLD,
one registered for a year, one expiring in three days. Registered by
:mod:`anyprobe.plugins.rdap`'s ``anyprobe_demo_services`` hook; imported
only when the demo runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from anyio.abc import ByteStream

import anyprobe
from anyprobe._http_server import Request, respond, serve_http

#: Days left on each demo domain's registration.
DOMAINS = {"example.test": 365.0, "expiring.test": 3.0}


def domain_object(name: str, days_left: float) -> bytes:
    """An RDAP domain object (RFC 9083) for ``name``, expiring in ``days_left`` days."""
    expires = datetime.fromtimestamp(time.time() + days_left * 86400, UTC)
    registered = datetime(2020, 1, 1, tzinfo=UTC)
    document = {
        "objectClassName": "domain",
        "rdapConformance": ["rdap_level_0"],
        "ldhName": name,
        "status": ["client transfer prohibited"],
        "events": [
            {"eventAction": "registration", "eventDate": registered.isoformat()},
            {"eventAction": "expiration", "eventDate": expires.isoformat(timespec="seconds")},
        ],
    }
    return json.dumps(document).encode()


async def _answer(request: Request, stream: ByteStream) -> None:
    name = request.path.removeprefix("/domain/").lower()
    days = DOMAINS.get(name)
    if days is None:
        await respond(stream, 404, b'{"errorCode": 404, "title": "Not Found"}')
        return
    await respond(
        stream, 200, domain_object(name, days), [("Content-Type", "application/rdap+json")]
    )


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """The RDAP server and a check of each of its domains."""
    async with serve_http(_answer) as port:
        options = {"rdap_server": f"http://127.0.0.1:{port}/"}
        yield [
            anyprobe.DemoCheck(
                "rdap: domain registered for a year",
                "rdap://example.test",
                anyprobe.Status.OK,
                options=options,
            ),
            anyprobe.DemoCheck(
                "rdap: domain expiring in 3 days",
                "rdap://expiring.test",
                anyprobe.Status.CRITICAL,
                options=options,
            ),
        ]
