"""A real SMTP server for the email reporter's tests: aiosmtpd on 127.0.0.1.

aiosmtpd's controller runs the server on an asyncio loop of its own in a
thread, so it answers the same way whichever event loop the test runs on.
``smtp_server(security=...)`` starts one: ``"starttls"`` (STARTTLS offered and
required, a trustme certificate for 127.0.0.1), ``"tls"`` (TLS from the first
byte) or ``"none"``; with ``users`` it wants a login (over TLS only). The
server keeps every message it accepted; ``refuse`` answers the next DATA
commands with 451 (try again later).
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .banner import TlsCa

__all__ = ["smtp_server"]


@dataclass
class SmtpServer:
    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: int = 0
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refuse -= 1
            self.arrived.release()
            return "451 4.3.0 try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.arrived.release()
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server(tls_ca: TlsCa) -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_server(security="starttls", users={"name": "password"})``: a new server."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    with contextlib.ExitStack() as stack:

        def start(security: str = "starttls", users: dict[str, str] | None = None) -> SmtpServer:
            server = SmtpServer(_free_port())

            def authenticate(
                smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> Any:
                if isinstance(data, LoginPassword) and users is not None:
                    login, password = data.login.decode(), data.password.decode()
                    if users.get(login) == password:
                        server.logins.append(login)
                        return AuthResult(success=True)
                return AuthResult(success=False, handled=False)

            context = tls_ca.server_context(name="127.0.0.1")
            options: dict[str, Any] = {
                "hostname": "127.0.0.1",
                "port": server.port,
                "authenticator": authenticate if users is not None else None,
                "auth_required": users is not None,
                "auth_require_tls": True,
            }
            if security == "starttls":
                options |= {"tls_context": context, "require_starttls": True}
            elif security == "tls":
                options |= {"ssl_context": context}
            controller = Controller(server, **options)
            controller.start()
            stack.callback(controller.stop)
            return server

        yield start
