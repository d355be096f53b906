"""The SSH probe: ``ssh://[user@]host[:port]`` checks an SSH server.

Without credentials it checks the server's version line and its host key
(like check_ssh and blackbox's ssh banner module, plus host key verification);
with a key file, the agent or a password it also logs in, and with
``command`` it runs a command and checks its exit status and output.

asyncssh runs on asyncio only: the whole SSH conversation is one coroutine
(:func:`_converse`) that runs through the run's :class:`~anyprobe.bridge.AsyncioBridge`
(directly on the host loop under asyncio, on the bridge's private loop under
trio). asyncssh objects live and die inside that coroutine; only plain data
(:class:`_Plan` in, :class:`_Report` and :class:`_Progress` out) crosses.
"""

from __future__ import annotations

import functools
import getpass
import importlib
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import SplitResult

import anyio
from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe._errors import did_you_mean
from anyprobe.bridge import AsyncioBridge, asyncio_bridge
from anyprobe.masking import masked_check, options_masker
from anyprobe.net import IpFamily, describe_os_error, fail_from_os_error, resolve

if TYPE_CHECKING:
    import asyncssh

#: The longest version line RFC 4253 allows (CR LF included).
MAX_VERSION_LINE = 255
#: Bytes of stderr kept for the summary of a failed command.
STDERR_KEPT = 4096
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
_FILES_KEY = "anyprobe.plugins.ssh:files"


class SshOptions(anyprobe.ProbeOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    expect_version: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) the server's version line must match "
        "(searched in e.g. 'SSH-2.0-OpenSSH_9.2p1 Debian-2').",
    )
    key_file: str | None = Field(
        None, description="Private key file to log in with (public key authentication)."
    )
    key_passphrase_env: str | None = Field(
        None, description="Name of the environment variable holding key_file's passphrase."
    )
    agent: bool = Field(
        False,
        description="Log in with the keys of the SSH agent (SSH_AUTH_SOCK), and the "
        "default keys in ~/.ssh as ssh does.",
    )
    password_env: str | None = Field(
        None,
        description="Name of the environment variable holding the password to log in "
        "with (the password itself never appears in options or output).",
    )
    command: str | None = Field(
        None, description="Command to run once logged in (needs credentials)."
    )
    expect_exit_status: int = Field(
        0, ge=0, le=255, description="Exit status the command must end with."
    )
    expect_output: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) the command's standard output must match "
        "(searched in its first max_output_bytes bytes).",
    )
    max_output_bytes: int = Field(
        65536,
        gt=0,
        description="Bytes of the command's output kept for expect_output; the rest "
        "is read and discarded.",
    )
    known_hosts: str | None = Field(
        None,
        description="known_hosts file to verify the host key against "
        "(default: ~/.ssh/known_hosts).",
    )
    host_key_fingerprint: str | None = Field(
        None,
        description="Expected host key fingerprint, 'SHA256:...' as ssh-keygen -l "
        "prints it; replaces known_hosts.",
    )
    host_key_algorithms: list[str] | None = Field(
        None,
        description="Host key algorithms to offer, in order of preference "
        "(e.g. ['ssh-ed25519']); useful with host_key_fingerprint.",
    )
    verify_host_key: bool = Field(
        True,
        description="Verify the server's host key. false accepts any key and says so "
        "in the result; never use it where the answer matters.",
    )

    @field_validator("expect_version", "expect_output")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)

    @field_validator("password_env", "key_passphrase_env")
    @classmethod
    def _valid_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), "
                "not the secret itself"
            )
        return value

    @field_validator("host_key_fingerprint")
    @classmethod
    def _valid_fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not _FINGERPRINT.match(value):
            raise ValueError("must look like 'SHA256:' followed by 43 base64 characters")
        return value

    @field_validator("host_key_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("host_key_algorithms needs at least one algorithm")
        known = _host_key_algorithms()
        if known is not None:
            for name in value:
                if name not in known:
                    hint = did_you_mean(name, known)
                    raise ValueError(f"unknown host key algorithm {name!r}{hint}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SshOptions:
        if self.command is not None and not self.authenticates:
            raise ValueError("command needs credentials: key_file, agent or password_env")
        if self.expect_output is not None and self.command is None:
            raise ValueError("expect_output needs a command")
        if self.key_passphrase_env is not None and self.key_file is None:
            raise ValueError("key_passphrase_env needs key_file")
        if not self.verify_host_key and (
            self.known_hosts is not None or self.host_key_fingerprint is not None
        ):
            raise ValueError(
                "verify_host_key = false contradicts known_hosts / host_key_fingerprint"
            )
        if self.known_hosts is not None and self.host_key_fingerprint is not None:
            raise ValueError("give known_hosts or host_key_fingerprint, not both")
        # Files are looked at last, so that a contradiction is named first.
        for option in ("key_file", "known_hosts"):
            path = getattr(self, option)
            if path is not None and not os.path.isfile(_expand(path)):
                reason = "is not a file" if os.path.exists(_expand(path)) else "does not exist"
                raise ValueError(f"{option} {path} {reason}")
        return self

    @property
    def authenticates(self) -> bool:
        return self.key_file is not None or self.agent or self.password_env is not None


def _host_key_algorithms() -> list[str] | None:
    """The host key algorithms asyncssh knows, or None without asyncssh (the
    missing package is reported on its own)."""
    try:
        from asyncssh.public_key import (
            get_certificate_algs,
            get_public_key_algs,
            get_x509_certificate_algs,
        )
    except ImportError:
        return None
    algorithms = get_x509_certificate_algs() + get_certificate_algs() + get_public_key_algs()
    return [name.decode("ascii") for name in algorithms]


@dataclass(frozen=True)
class _Plan:
    """Everything the SSH conversation needs, as plain data."""

    host: str
    port: int
    addresses: list[str]
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
class _Report:
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


class _Progress:
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


class SshProbe(anyprobe.Probe[SshOptions]):
    """Check an SSH server: version, host key, and optionally login and a command."""

    name = "ssh"
    schemes = ("ssh",)
    Options = SshOptions
    default_ports = {"ssh": 22}
    description = "SSH version, host key, login and command, like check_ssh / check_by_ssh."

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """asyncssh (the ``ssh`` extra), and anyio's asyncio backend for the bridge."""
        import importlib

        anyprobe.require("asyncssh", needed_for="ssh:// checks", install="anyprobe[ssh]")
        for module in ("getpass", "pwd", "shlex", "anyio._backends._asyncio"):
            importlib.import_module(module)
        anyio.Path  # noqa: B018 - anyio imports its file API on first use (known_hosts)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        if url.password is not None:
            raise anyprobe.TargetError(
                f"{text}: no password in an ssh:// URL; name an environment variable "
                "with the password_env option"
            )
        if url.path not in ("", "/") or url.query or url.fragment:
            raise anyprobe.TargetError(f"{text}: an ssh:// URL has no path or query")
        return super().validate_url(url, text)

    async def check(
        self, target: anyprobe.Target, options: SshOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        # The command's output is quoted in summaries: a remote that prints the
        # password or passphrase must not reveal it (anyprobe.masking's rule).
        masker = options_masker(options)
        for variable in (options.password_env, options.key_passphrase_env):
            value = os.environ.get(variable) if variable else None
            if value:
                masker.add(value)
        return await masked_check(lambda: self._check(target, options, ctx), ctx, masker)

    async def _check(
        self, target: anyprobe.Target, options: SshOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        if "asyncssh" not in sys.modules:
            # Importing asyncssh takes a few hundred ms: never on the event loop.
            await anyio.to_thread.run_sync(importlib.import_module, "asyncssh")
        plan = await _make_plan(target, options, ctx)
        progress = _Progress()
        try:
            report = await asyncio_bridge(ctx).run(_converse, plan, progress)
        except BaseException:
            if progress.phase is not None:
                ctx.current_phase = progress.phase
            raise
        finally:
            for name, seconds in list(progress.phases.items()):
                ctx.record_phase(name, seconds)
            for note in list(progress.notes):
                ctx.trace(note)
            ctx.metrics.update(progress.metrics)
        return await _verdict(plan, options, report)


async def _make_plan(
    target: anyprobe.Target, options: SshOptions, ctx: anyprobe.CheckContext
) -> _Plan:
    """Resolve the host and read the files and secrets the conversation needs."""
    assert target.port is not None
    with ctx.phase("resolve"):
        addresses = await resolve(target.host, target.port, options.ip_family)
    ctx.trace(f"resolved {target.host} to {', '.join(addresses)}")
    key_data = key_passphrase = password = None
    if options.key_file is not None:
        key_data = await _read_file(ctx, options.key_file, "key_file")
    if options.key_passphrase_env is not None:
        key_passphrase = _secret_from_env(options.key_passphrase_env, "key_passphrase_env")
    if options.password_env is not None:
        password = _secret_from_env(options.password_env, "password_env")
    verify: Literal["known_hosts", "fingerprint", "off"]
    known_hosts_text, known_hosts_name = "", ""
    if not options.verify_host_key:
        verify = "off"
    elif options.host_key_fingerprint is not None:
        verify = "fingerprint"
    else:
        verify = "known_hosts"
        if options.known_hosts is not None:
            known_hosts_name = options.known_hosts
            data = await _read_file(ctx, options.known_hosts, "known_hosts")
        else:
            known_hosts_name = "~/.ssh/known_hosts"
            default = _expand(known_hosts_name)
            # A user without a known_hosts file knows no host: every key is unknown.
            data = (
                await _read_file(ctx, str(default), "known_hosts")
                if await anyio.Path(default).is_file()
                else b""
            )
        known_hosts_text = data.decode("utf-8", "replace")
    username = urlsplit_username(target.url) or _local_user()
    return _Plan(
        host=target.host,
        port=target.port,
        addresses=addresses,
        username=username,
        expect_version=options.expect_version,
        authenticate=options.authenticates,
        key_data=key_data,
        key_passphrase=key_passphrase,
        agent=options.agent,
        password=password,
        command=options.command,
        max_output_bytes=options.max_output_bytes,
        verify=verify,
        known_hosts_text=known_hosts_text,
        known_hosts_name=known_hosts_name,
        fingerprint=options.host_key_fingerprint,
        host_key_algorithms=(
            tuple(options.host_key_algorithms) if options.host_key_algorithms else None
        ),
    )


def urlsplit_username(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    username = urlsplit(url).username
    return unquote(username) if username else None


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "root" if os.geteuid() == 0 else str(os.geteuid())


async def _read_file(ctx: anyprobe.CheckContext, path: str, option: str) -> bytes:
    """A file's bytes, read once per run (off the event loop)."""
    cache: dict[str, bytes] = ctx.shared(_FILES_KEY, dict)
    resolved = _expand(path)
    if resolved not in cache:
        try:
            cache[resolved] = await anyio.Path(resolved).read_bytes()
        except OSError as exc:
            raise anyprobe.CheckFailed(
                f"cannot read {option} {path}: {describe_os_error(exc)}",
                status=anyprobe.Status.UNKNOWN,
                error=exc,
            ) from None
    return cache[resolved]


def _expand(path: str) -> str:
    return os.path.expanduser(path)  # no I/O: a string operation on $HOME


def _secret_from_env(name: str, option: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise anyprobe.CheckFailed(
            f"{option}: environment variable {name} is not set",
            status=anyprobe.Status.UNKNOWN,
        )
    return value


def _printable(data: bytes, limit: int = 80) -> str:
    text = data.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _verdict(plan: _Plan, options: SshOptions, report: _Report) -> anyprobe.Outcome:
    """Turn a finished conversation into an outcome."""
    key = f"{report.host_key_type} {report.host_key_fingerprint}"
    parts = [report.server_version]
    if plan.verify == "off":
        parts.append(f"host key {key} NOT verified (verify_host_key = false)")
    elif report.host_key_not_in_known_hosts:
        parts.append(f"host key {key} NOT verified (not in {plan.known_hosts_name})")
    else:
        parts.append(f"host key {report.host_key_type} verified")
    if plan.authenticate:
        parts.append(f"logged in as {plan.username}")
    if plan.command is not None:
        command = _printable(plan.command.encode(), 40)
        if report.exit_status is None:
            raise anyprobe.CheckFailed(
                f"command '{command}' was killed by signal {report.exit_signal or '?'}"
            )
        if report.exit_status != options.expect_exit_status:
            first_line = report.error_output.strip().splitlines()[:1]
            said = f": {_printable(first_line[0])}" if first_line else ""
            raise anyprobe.CheckFailed(
                f"command '{command}' exited {report.exit_status}, "
                f"expected {options.expect_exit_status}{said}"
            )
        if options.expect_output is not None:
            text = report.output.decode("utf-8", "replace")
            pattern = anyprobe.compile_pattern(options.expect_output)
            if await pattern.search_off_loop(text) is None:
                raise anyprobe.CheckFailed(
                    f"output of '{command}' does not match {options.expect_output!r} "
                    f"(got {_printable(report.output.strip())!r})"
                )
        parts.append(f"'{command}' exited {report.exit_status}")
    return anyprobe.Outcome.ok(", ".join(parts))


# -- the conversation, on the asyncio loop ------------------------------------------


class _HandshakeDone(Exception):
    """Raised when authentication would start but the check needs no login."""


async def _converse(plan: _Plan, progress: _Progress) -> _Report:
    """The whole SSH conversation; runs on an asyncio loop (the host's or the bridge's).

    Raises :class:`~anyprobe.CheckFailed` with the verdict when something is wrong.
    """
    import asyncssh

    report = _Report()
    try:
        progress.enter("connect")
        sock = await _open_socket(plan.addresses, plan.port)
        try:
            address = sock.getpeername()[0]
            progress.note(f"connected to {address} port {plan.port}")
            progress.metrics["address"] = address
            progress.enter("handshake")
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


async def _open_socket(addresses: list[str], port: int) -> socket.socket:
    """A connected non-blocking socket to the first address that accepts."""
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect((address, port))
            except BlockingIOError:
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code)) from None
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise fail_from_os_error(last)


async def _read_version(sock: socket.socket, plan: _Plan, progress: _Progress) -> str:
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
    text = _printable(line, MAX_VERSION_LINE)
    if not line.startswith(b"SSH-"):
        raise anyprobe.CheckFailed(f"not an SSH server: it sent '{_printable(line)}'")
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

        def __init__(self, plan: _Plan, progress: _Progress, report: _Report) -> None:
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

        def __init__(self, plan: _Plan, progress: _Progress, report: _Report) -> None: ...


def _same_fingerprint(offered: str, expected: str) -> bool:
    return offered.rstrip("=") == expected.rstrip("=")


async def _establish(
    sock: socket.socket, plan: _Plan, progress: _Progress, report: _Report
) -> asyncssh.SSHClientConnection | None:
    """Key exchange, host key verification and (when asked) authentication.

    Returns the logged-in connection, or ``None`` when the check needs no login.
    """
    import asyncssh

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
        raise anyprobe.CheckFailed(_describe_host_key_failure(plan, report), error=exc) from None
    except asyncssh.PermissionDenied as exc:
        methods = []
        if plan.key_data is not None:
            methods.append("key_file")
        if plan.agent:
            methods.append("agent")
        if plan.password is not None:
            methods.append("password")
        raise anyprobe.CheckFailed(
            f"authentication failed for user {plan.username} (tried {', '.join(methods)})",
            error=exc,
        ) from None
    progress.note(f"logged in as {plan.username}")
    return conn


def _known_host_keys(plan: _Plan, address: str) -> list[Any]:
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


def _describe_host_key_failure(plan: _Plan, report: _Report) -> str:
    offered = f"{report.host_key_type} {report.host_key_fingerprint}".strip()
    where = plan.host if plan.port == 22 else f"[{plan.host}]:{plan.port}"
    if plan.verify == "fingerprint":
        return (
            f"host key mismatch for {where}: server offered {offered}, expected {plan.fingerprint}"
        )
    known = [
        f"{k.get_algorithm()} {k.get_fingerprint('sha256')}"
        for k in _known_host_keys(plan, plan.addresses[0])
    ]
    if known:
        return (
            f"HOST KEY CHANGED for {where}: server offered {offered}, "
            f"{plan.known_hosts_name} has {', '.join(known)}"
        )
    return f"unknown host key for {where}: {offered} is not in {plan.known_hosts_name}"


def _describe_ssh_error(exc: BaseException, progress: _Progress) -> str:
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
    conn: asyncssh.SSHClientConnection, plan: _Plan, report: _Report, progress: _Progress
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
        f"'{_printable(plan.command.encode(), 40)}' exited {process.exit_status}, "
        f"{report.output_bytes} bytes of output"
    )


# -- anyprobe demo ---------------------------------------------------------------------


@dataclass(frozen=True)
class _DemoServer:
    port: int
    fingerprint: str
    client_key: bytes = field(repr=False)
    stop: Callable[[], Awaitable[None]] = field(repr=False)


async def _start_demo_server() -> _DemoServer:
    """An asyncssh server on loopback (runs on the asyncio loop of a bridge)."""
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode() + "\n")

    async def shell(process: Any) -> None:
        if process.command == "uptime":
            process.stdout.write("up 42 days, load average: 0.01\n")
            process.exit(0)
        else:
            process.exit(127)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

    server = await asyncssh.create_server(
        Server,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        process_factory=shell,
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return _DemoServer(
        port=server.sockets[0].getsockname()[1],
        fingerprint=host_key.get_fingerprint("sha256"),
        client_key=client_key.export_private_key(),
        stop=stop,
    )


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """An SSH server: a banner check, a login with a command, a login to an unknown host key."""
    async with AsyncioBridge() as bridge:
        server = await bridge.run(_start_demo_server)
        try:
            async with anyio.TemporaryDirectory(prefix="anyprobe-ssh-demo-") as tmp:
                key_file = anyio.Path(tmp) / "id_ed25519"
                await key_file.write_bytes(server.client_key)
                await key_file.chmod(0o600)
                empty_known_hosts = anyio.Path(tmp) / "known_hosts"
                await empty_known_hosts.write_text("")
                url = f"ssh://demo@127.0.0.1:{server.port}"
                yield [
                    anyprobe.DemoCheck(
                        "ssh: version and host key",
                        url,
                        anyprobe.Status.OK,
                        {"host_key_fingerprint": server.fingerprint},
                    ),
                    anyprobe.DemoCheck(
                        "ssh: key login and command",
                        url,
                        anyprobe.Status.OK,
                        {
                            "host_key_fingerprint": server.fingerprint,
                            "key_file": str(key_file),
                            "command": "uptime",
                            "expect_output": "load average",
                        },
                    ),
                    anyprobe.DemoCheck(
                        "ssh: login to an unknown host key",
                        url,
                        anyprobe.Status.CRITICAL,
                        {
                            "known_hosts": str(empty_known_hosts),
                            "key_file": str(key_file),
                            "command": "uptime",
                        },
                    ),
                ]
        finally:
            with anyio.CancelScope(shield=True):
                await bridge.run(server.stop)


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(SshProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
