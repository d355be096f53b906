"""The SSH conversation of the SSH probe, on an asyncio event loop.

asyncssh runs on asyncio only: the whole conversation is one coroutine
(:func:`converse`) that the probe runs through the run's
:class:`~anyprobe.bridge.AsyncioBridge` (directly on the host loop under
asyncio, on the bridge's private loop under trio). asyncssh objects live and
die inside it; only plain data crosses: a :class:`Plan` and the socket the
probe connected with ``ctx.connect_socket`` in, a :class:`Report` and the
:class:`Progress` it wrote out.
"""

from __future__ import annotations

import functools
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio

import anyprobe
from anyprobe.net import fail_from_os_error

if TYPE_CHECKING:
    import asyncssh

__all__ = ["MAX_VERSION_LINE", "STDERR_KEPT", "Plan", "Progress", "Report", "converse", "printable"]

#: The longest version line RFC 4253 allows (CR LF included).
MAX_VERSION_LINE = 255
#: Bytes of stderr kept for the summary of a failed command.
STDERR_KEPT = 4096


@dataclass(frozen=True)
class Plan:
    """Everything the SSH conversation needs, as plain data."""

    host: str
    port: int
    username: str
    expect_version: str | None
    authenticate: bool
    key_data: bytes | None
    key_passphrase: str | None = field(repr=False)
    agent: bool
    password: str | None = field(repr=False)
    command: str | None
    max_output_bytes: int
    verify: Literal["known_hosts", "fingerprint", "off"]
    known_hosts_text: str
    known_hosts_name: str
    fingerprint: str | None
    host_key_algorithms: tuple[str, ...] | None


@dataclass
class Report:
    """What the conversation found; plain data."""

    server_version: str = ""
    host_key_type: str = ""
    host_key_fingerprint: str = ""
    exit_status: int | None = None
    exit_signal: str | None = None
    output: bytes = b""
    output_bytes: int = 0
    error_output: bytes = b""
    # A key accepted without a login although known_hosts does not list the host.
    host_key_not_in_known_hosts: bool = False


class Progress:
    """Phase timings, trace lines and metrics written by the conversation and
    read by the caller once it returns (or is cancelled)."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.phases: dict[str, float] = {}
        self.notes: list[str] = []
        self.metrics: dict[str, Any] = {}
        self._since: float | None = None

    def enter(self, name: str) -> None:
        self.stop()
        self.phase = name
        self._since = time.perf_counter()

    def stop(self) -> None:
        """End the running phase's timing; ``phase`` still names it for errors."""
        if self._since is not None and self.phase is not None:
            elapsed = time.perf_counter() - self._since
            self.phases[self.phase] = self.phases.get(self.phase, 0.0) + elapsed
        self._since = None

    def note(self, message: str) -> None:
        self.notes.append(message)


def printable(data: bytes, limit: int = 80) -> str:
    text = data.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _HandshakeDone(Exception):
    """Raised when authentication would start but the check needs no login."""


async def converse(plan: Plan, sock: socket.socket, progress: Progress) -> Report:
    """The whole SSH conversation over ``sock`` (connected by ``ctx.connect_socket``,
    nothing read from it yet, still the caller's: the conversation works on a
    dup of it); runs on an asyncio loop (the host's or the bridge's).

    Raises :class:`~anyprobe.CheckFailed` with the verdict when something is wrong.
    """
    import asyncssh

    report = Report()
    try:
        progress.enter("handshake")
        # The conversation's own copy of the caller's socket (asyncssh closes
        # it); taken here, on the loop that uses it, so that a conversation
        # that never starts leaves nothing open.
        sock = sock.dup()
        try:
            report.server_version = await _read_version(sock, plan, progress)
            conn = await _establish(sock, plan, progress, report)
        except BaseException:
            sock.close()  # idempotent: asyncssh may already have closed it
            raise
        if conn is None:  # no login wanted
            return report
        try:
            if plan.command is not None:
                progress.enter("command")
                await _run_command(conn, plan, report, progress)
        finally:
            conn.close()
            with anyio.move_on_after(1.0, shield=True):
                await conn.wait_closed()
    except asyncssh.Error as exc:
        raise anyprobe.CheckFailed(_describe_ssh_error(exc, progress), error=exc) from None
    except OSError as exc:
        raise fail_from_os_error(exc) from None
    finally:
        progress.stop()
    return report


async def _read_version(sock: socket.socket, plan: Plan, progress: Progress) -> str:
    """The server's version line, peeked (asyncssh reads it again afterwards).

    Fails when the first line is not an SSH 2.0 version line, so that a
    server speaking another protocol is named as such instead of timing out.
    """
    seen = -1
    while True:
        await anyio.wait_readable(sock)
        try:
            data = sock.recv(MAX_VERSION_LINE + 1, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data:
            raise anyprobe.CheckFailed("the server closed the connection without a version line")
        end = data.find(b"\n")
        if end >= 0 or len(data) > MAX_VERSION_LINE:
            break
        if len(data) == seen:  # a partial line: wait for the rest without spinning
            await anyio.sleep(0.01)
        seen = len(data)
    line = data[:end].rstrip(b"\r") if end >= 0 else data
    text = printable(line, MAX_VERSION_LINE)
    if not line.startswith(b"SSH-"):
        raise anyprobe.CheckFailed(f"not an SSH server: it sent '{printable(line)}'")
    protocol = line[4:].split(b"-", 1)[0].decode("ascii", "replace")
    progress.metrics["server_version"] = text
    progress.metrics["protocol_version"] = protocol
    progress.note(f"server version: {text}")
    if end < 0:
        raise anyprobe.CheckFailed(f"version line longer than {MAX_VERSION_LINE} bytes")
    if protocol not in ("2.0", "1.99"):
        raise anyprobe.CheckFailed(f"server speaks SSH protocol {protocol}, not 2.0 ({text})")
    if plan.expect_version is not None and (
        await anyprobe.compile_pattern(plan.expect_version).search_off_loop(text) is None
    ):
        raise anyprobe.CheckFailed(
            f"server version '{text}' does not match expect_version {plan.expect_version!r}"
        )
    return text


@functools.cache
def _client_class() -> type[_ClientType]:
    import asyncssh

    class Client(asyncssh.SSHClient):
        """Records the host key and the start of authentication."""

        def __init__(self, plan: Plan, progress: Progress, report: Report) -> None:
            self.plan = plan
            self.progress = progress
            self.report = report
            self.conn: asyncssh.SSHClientConnection | None = None

        def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
            self.conn = conn

        def _record_key(self, key: asyncssh.SSHKey) -> None:
            self.report.host_key_type = key.get_algorithm()
            self.report.host_key_fingerprint = key.get_fingerprint("sha256")
            self.progress.metrics["host_key_type"] = self.report.host_key_type
            self.progress.metrics["host_key_fingerprint"] = self.report.host_key_fingerprint

        def validate_host_public_key(
            self, host: str, addr: str, port: int, key: asyncssh.SSHKey
        ) -> bool:
            # Called for a key asyncssh does not already trust.
            self._record_key(key)
            if self.plan.verify == "fingerprint" and self.plan.fingerprint is not None:
                return _same_fingerprint(key.get_fingerprint("sha256"), self.plan.fingerprint)
            # No login, no credentials sent: nothing is at risk with a host
            # known_hosts does not list (check_ssh and blackbox_exporter say ok
            # too), and the summary says the key was not verified. A host listed
            # with another key is a changed key: refused.
            unknown_host = self.plan.verify == "known_hosts" and not _known_host_keys(
                self.plan, addr
            )
            if unknown_host and not self.plan.authenticate:
                self.report.host_key_not_in_known_hosts = True
                return True
            return False

        def begin_auth(self, username: str) -> None:
            if self.conn is not None:
                key = self.conn.get_server_host_key()
                if key is not None:
                    self._record_key(key)
            verified = self.plan.verify != "off" and not self.report.host_key_not_in_known_hosts
            self.progress.metrics["host_key_verified"] = verified
            why = (
                f"not in {self.plan.known_hosts_name}"
                if self.report.host_key_not_in_known_hosts
                else "verify_host_key = false"
            )
            self.progress.note(
                f"host key {self.report.host_key_type} {self.report.host_key_fingerprint} "
                + ("verified" if verified else f"NOT verified ({why})")
            )
            self.progress.enter("auth")
            if not self.plan.authenticate:
                raise _HandshakeDone

    return cast("type[_ClientType]", Client)


if TYPE_CHECKING:

    class _ClientType(asyncssh.SSHClient):
        conn: asyncssh.SSHClientConnection | None

        def __init__(self, plan: Plan, progress: Progress, report: Report) -> None: ...


def _same_fingerprint(offered: str, expected: str) -> bool:
    return offered.rstrip("=") == expected.rstrip("=")


async def _establish(
    sock: socket.socket, plan: Plan, progress: Progress, report: Report
) -> asyncssh.SSHClientConnection | None:
    """Key exchange, host key verification and (when asked) authentication.

    Returns the logged-in connection, or ``None`` when the check needs no login.
    """
    import asyncssh

    address = sock.getpeername()[0]  # before asyncssh takes (and closes) the socket
    known_hosts: Any
    if plan.verify == "off":
        known_hosts = None
    elif plan.verify == "fingerprint":
        known_hosts = ([], [], [])  # trust nothing: every key goes to the client's check
    else:
        try:
            known_hosts = asyncssh.import_known_hosts(plan.known_hosts_text)
        except (ValueError, asyncssh.Error) as exc:
            raise anyprobe.CheckFailed(
                f"cannot parse known_hosts {plan.known_hosts_name}: {exc}",
                status=anyprobe.Status.UNKNOWN,
            ) from None
    client_keys: Any = None
    if plan.key_data is not None:
        try:
            client_keys = [asyncssh.import_private_key(plan.key_data, plan.key_passphrase)]
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise anyprobe.CheckFailed(
                f"cannot load key_file: {exc}", status=anyprobe.Status.UNKNOWN
            ) from None
    elif plan.agent:
        client_keys = ()  # the agent's keys, then the default ones, as ssh does
    client = _client_class()(plan, progress, report)
    extra: dict[str, Any] = {}
    if plan.host_key_algorithms:
        extra["server_host_key_algs"] = list(plan.host_key_algorithms)
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client,
            plan.host,
            plan.port,
            sock=sock,
            config=None,
            known_hosts=known_hosts,
            x509_trusted_certs=None,
            username=plan.username,
            client_keys=client_keys,
            agent_path=() if plan.agent else None,
            agent_identities=() if plan.agent else None,
            password=plan.password,
            gss_host=None,
            agent_forwarding=False,
            **extra,
        )
    except _HandshakeDone:
        # No login wanted: the version and host key are all this check needed.
        # asyncssh has closed the connection; wait for the transport to let go.
        if client.conn is not None:
            client.conn.abort()
            with anyio.move_on_after(1.0, shield=True):
                await client.conn.wait_closed()
        return None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise anyprobe.CheckFailed(
            _describe_host_key_failure(plan, report, address), error=exc
        ) from None
    except asyncssh.PermissionDenied as exc:
        raise anyprobe.CheckFailed(_describe_auth_failure(plan), error=exc) from None
    progress.note(f"logged in as {plan.username}")
    return conn


def _known_host_keys(plan: Plan, address: str) -> list[Any]:
    """The keys (and CA keys) known_hosts lists for the checked host, or none."""
    import asyncssh

    try:
        matched = asyncssh.match_known_hosts(
            asyncssh.import_known_hosts(plan.known_hosts_text),
            plan.host,
            address,
            plan.port if plan.port != 22 else None,
        )
    except (ValueError, asyncssh.Error):
        return []
    return [*matched[0], *matched[1]]


def _describe_auth_failure(plan: Plan) -> str:
    methods = []
    if plan.key_data is not None:
        methods.append("key_file")
    if plan.agent:
        methods.append("agent")
    if plan.password is not None:
        methods.append("password")
    return f"authentication failed for user {plan.username} (tried {', '.join(methods)})"


def _describe_host_key_failure(plan: Plan, report: Report, address: str) -> str:
    offered = f"{report.host_key_type} {report.host_key_fingerprint}".strip()
    where = plan.host if plan.port == 22 else f"[{plan.host}]:{plan.port}"
    if plan.verify == "fingerprint":
        return (
            f"host key mismatch for {where}: server offered {offered}, expected {plan.fingerprint}"
        )
    known = [
        f"{k.get_algorithm()} {k.get_fingerprint('sha256')}"
        for k in _known_host_keys(plan, address)
    ]
    if known:
        return (
            f"HOST KEY CHANGED for {where}: server offered {offered}, "
            f"{plan.known_hosts_name} has {', '.join(known)}"
        )
    return f"unknown host key for {where}: {offered} is not in {plan.known_hosts_name}"


def _describe_ssh_error(exc: BaseException, progress: Progress) -> str:
    import asyncssh

    reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    if isinstance(exc, asyncssh.ConnectionLost):
        return f"connection closed by the server during {progress.phase}"
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        return f"key exchange failed: {reason}"
    if isinstance(exc, asyncssh.ProtocolError | asyncssh.ProtocolNotSupported):
        return f"SSH protocol error: {reason}"
    return f"SSH error during {progress.phase}: {reason}"


async def _run_command(
    conn: asyncssh.SSHClientConnection, plan: Plan, report: Report, progress: Progress
) -> None:
    import asyncssh

    assert plan.command is not None
    process = await conn.create_process(plan.command, stdin=asyncssh.DEVNULL, encoding=None)
    try:
        kept: list[bytes] = []
        errors: list[bytes] = []

        async def pump(reader: Any, sink: list[bytes], limit: int, count: bool) -> None:
            held = 0
            while True:
                chunk: bytes = await reader.read(65536)
                if not chunk:
                    return
                if count:
                    report.output_bytes += len(chunk)
                if held < limit:
                    sink.append(chunk[: limit - held])
                    held += len(sink[-1])

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, process.stdout, kept, plan.max_output_bytes, True)
            tg.start_soon(pump, process.stderr, errors, STDERR_KEPT, False)
        await process.wait_closed()
    finally:
        process.close()
    report.output = b"".join(kept)
    report.error_output = b"".join(errors)
    report.exit_status = process.exit_status
    signal = process.exit_signal
    report.exit_signal = signal[0] if signal else None
    progress.metrics["exit_status"] = process.exit_status
    progress.metrics["output_bytes"] = report.output_bytes
    progress.metrics["output_truncated"] = report.output_bytes > plan.max_output_bytes
    progress.note(
        f"'{printable(plan.command.encode(), 40)}' exited {process.exit_status}, "
        f"{report.output_bytes} bytes of output"
    )
