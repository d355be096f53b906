"""A loopback HTTP receiver for webhook tests: it records every request it gets.

It is :class:`anyprobe.testing.HttpServer` (in a thread with its own event
loop), so it answers the same way whichever event loop the test runs on, if
any. Tests script its answers (``statuses``) and can hold requests until they
release them (``hold``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import pytest

from anyprobe.testing import HttpReply, HttpRequest, HttpServer

__all__ = ["webhook_receiver"]

#: Longest a held request waits for the test to release it.
HOLD_LIMIT = 30.0

#: A request received: ``method``, ``path``, ``headers`` (lower-case), ``body``, ``json()``.
ReceivedRequest = HttpRequest


@dataclass
class WebhookReceiver:
    """What the receiver got, and how it answers.

    ``statuses`` are the status codes of the next answers, in order; once
    used up, every answer is ``default_status``. An answer that is not a
    success carries ``error_headers`` (``{"Retry-After": "0"}``). While
    ``hold`` is set, each request waits until :meth:`release` is called.
    """

    server: HttpServer | None = None
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    error_headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url("/hook")

    @property
    def requests(self) -> list[ReceivedRequest]:
        assert self.server is not None
        return self.server.requests

    def release(self) -> None:
        """Let held requests (and any later one) through."""
        self.hold = False
        self._released.set()

    def bodies(self) -> list[Any]:
        return [request.json() for request in list(self.requests)]

    async def answer(self, request: HttpRequest) -> HttpReply:
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else self.default_status
        self.arrived.release()
        if self.hold:
            await anyio.to_thread.run_sync(self._released.wait, HOLD_LIMIT)
        return HttpReply(
            status,
            b'{"ok": true}' if status < 400 else b'{"ok": false}',
            headers=self.error_headers if status >= 400 else {},
            content_type="application/json",
        )


@pytest.fixture
def webhook_receiver(
    anyprobe_http_server: Callable[..., HttpServer],
) -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 that records requests; ``.url`` is ``http://.../hook``."""
    receiver = WebhookReceiver()
    receiver.server = anyprobe_http_server(default=receiver.answer)
    try:
        yield receiver
    finally:
        receiver.release()
