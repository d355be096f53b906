"""SSH fixtures: an asyncssh server, OpenSSH's sshd, and ports that misbehave.

The asyncssh server runs on its own asyncio loop in a thread, so it serves
tests on either backend. Every server listens on 127.0.0.1, on a free port.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = [
    "non_ssh_port",
    "openssh_server",
    "silent_port",
    "ssh_keys",
    "ssh_server",
    "stalled_kex_port",
]

T = TypeVar("T")

USER = "probe"
PASSWORD = "correct horse battery staple"
#: Bytes the "lots" command prints.
LOTS_BYTES = 1 << 20


@dataclass
class SshKeys:
    """Key files for the tests: the client's (authorized), a stranger's, the host's."""

    directory: Path
    client_key: Path
    wrong_key: Path
    host_key_data: bytes = field(repr=False)
    other_host_key_data: bytes = field(repr=False)
    client_public: str = ""


@pytest.fixture
def ssh_keys(tmp_path: Path) -> SshKeys:
    import asyncssh

    client = asyncssh.generate_private_key("ssh-ed25519")
    wrong = asyncssh.generate_private_key("ssh-ed25519")
    host = asyncssh.generate_private_key("ssh-ed25519")
    other = asyncssh.generate_private_key("ssh-ed25519")
    client_key = tmp_path / "id_client"
    wrong_key = tmp_path / "id_wrong"
    client.write_private_key(str(client_key))
    wrong.write_private_key(str(wrong_key))
    client_key.chmod(0o600)
    wrong_key.chmod(0o600)
    return SshKeys(
        directory=tmp_path,
        client_key=client_key,
        wrong_key=wrong_key,
        host_key_data=host.export_private_key(),
        other_host_key_data=other.export_private_key(),
        client_public=client.export_public_key().decode().strip(),
    )


class LoopThread:
    """An asyncio loop in a thread, for servers the tests run on either backend."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-ssh-server")
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class SshServer:
    """A running asyncssh server and what a test needs to check it."""

    port: int
    user: str
    password: str
    keys: SshKeys
    host_key_type: str
    host_key_fingerprint: str
    known_hosts: Path
    closed_sessions: list[str]

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def write_known_hosts(self, name: str, line_key: bytes) -> Path:
        """A known_hosts file listing this server with ``line_key`` (a public key)."""
        path = self.keys.directory / name
        path.write_text(f"[127.0.0.1]:{self.port} {line_key.decode().strip()}\n")
        return path


async def _handle(process: Any) -> None:
    """The asyncssh server's shell: a few commands the tests call."""
    command = process.command or ""
    try:
        if command == "true":
            process.exit(0)
        elif command.startswith("echo "):
            process.stdout.write(command[5:] + "\n")
            process.exit(0)
        elif command == "fail":
            process.stderr.write("failing on purpose\nsecond line\n")
            process.exit(3)
        elif command == "lots":
            line = "x" * 1023 + "\n"
            for _ in range(LOTS_BYTES // 1024):
                process.stdout.write(line)
                await process.stdout.drain()
            process.exit(0)
        elif command == "hang":
            await asyncio.sleep(3600)
        else:
            process.stderr.write(f"unknown command: {command}\n")
            process.exit(127)
    except Exception:  # the client went away mid-command
        process.close()


@pytest.fixture
def ssh_server(ssh_keys: SshKeys) -> Iterator[SshServer]:
    """An asyncssh server with key and password authentication for user ``probe``."""
    import asyncssh

    host_key = asyncssh.import_private_key(ssh_keys.host_key_data)
    authorized = asyncssh.import_authorized_keys(ssh_keys.client_public + "\n")
    closed: list[str] = []

    class Server(asyncssh.SSHServer):
        def connection_lost(self, exc: Exception | None) -> None:
            closed.append(type(exc).__name__ if exc else "closed")

        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == USER and password == PASSWORD

    runner = LoopThread()

    async def start() -> Any:
        return await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            process_factory=_handle,
            encoding="utf-8",
        )

    server = runner.call(start())
    port = server.sockets[0].getsockname()[1]
    public = host_key.export_public_key()
    known_hosts = ssh_keys.directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {public.decode().strip()}\n")
    try:
        yield SshServer(
            port=port,
            user=USER,
            password=PASSWORD,
            keys=ssh_keys,
            host_key_type=host_key.get_algorithm(),
            host_key_fingerprint=host_key.get_fingerprint("sha256"),
            known_hosts=known_hosts,
            closed_sessions=closed,
        )
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        runner.call(stop())
        runner.stop()


@dataclass
class ScriptedPort:
    """A loopback port served by a thread: says ``greeting``, then only listens.

    ``accepted`` is set on a connection, ``closed`` once the client closed it.
    """

    port: int
    accepted: threading.Event
    closed: threading.Event


def _scripted_server(greeting: bytes) -> Iterator[ScriptedPort]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted, closed, stop = threading.Event(), threading.Event(), threading.Event()

    def serve() -> None:
        conns: list[socket.socket] = []
        try:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    conn = None
                if conn is not None:
                    conns.append(conn)
                    accepted.set()
                    if greeting:
                        conn.sendall(greeting)
                for client in list(conns):
                    ready, _, _ = select.select([client], [], [], 0)
                    if ready and not _receive(client):  # the client closed
                        conns.remove(client)
                        client.close()
                        closed.set()
        finally:
            for client in conns:
                client.close()

    thread = threading.Thread(target=serve, name="test-scripted-port")
    thread.start()
    try:
        yield ScriptedPort(listener.getsockname()[1], accepted, closed)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _receive(client: socket.socket) -> bytes:
    try:
        return client.recv(65536)
    except ConnectionResetError:  # closed with unread data: a reset is a close too
        return b""


@pytest.fixture
def silent_port() -> Iterator[ScriptedPort]:
    """Accepts connections and never says a word."""
    yield from _scripted_server(b"")


@pytest.fixture
def stalled_kex_port() -> Iterator[ScriptedPort]:
    """Sends an SSH version line, then nothing: a client hangs in the key exchange."""
    yield from _scripted_server(b"SSH-2.0-Stalled_1.0\r\n")


@pytest.fixture
def non_ssh_port() -> Iterator[ScriptedPort]:
    """Greets like an SMTP server."""
    yield from _scripted_server(b"220 mail.example.test ESMTP ready\r\n")


@dataclass
class OpenSsh:
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_key_fingerprint: str

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


SSHD = "/usr/sbin/sshd"


@pytest.fixture
def openssh_server(ssh_keys: SshKeys) -> Iterator[OpenSsh]:
    """OpenSSH's sshd on a loopback high port, with its own host key and config."""
    import asyncssh

    sshd = shutil.which("sshd") or (SSHD if os.path.exists(SSHD) else None)
    if sshd is None:
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    directory = ssh_keys.directory
    host_key = asyncssh.import_private_key(ssh_keys.host_key_data)
    host_key_path = directory / "ssh_host_ed25519_key"
    host_key.write_private_key(str(host_key_path))
    host_key_path.chmod(0o600)
    authorized = directory / "authorized_keys"
    authorized.write_text(ssh_keys.client_public + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key_path}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "StrictModes no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "LogLevel ERROR\n"
    )
    # sshd refuses to start without its privilege separation directory.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_banner(port, process)
        known_hosts = directory / "openssh_known_hosts"
        known_hosts.write_text(
            f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n"
        )
        user = _current_user()
        yield OpenSsh(
            port=port,
            user=user,
            client_key=ssh_keys.client_key,
            known_hosts=known_hosts,
            host_key_fingerprint=host_key.get_fingerprint("sha256"),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _wait_for_banner(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"sshd did not start: {error.strip()[:300]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("sshd did not answer within 10 s")
