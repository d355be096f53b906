"""The SSH probe: ``ssh://[user@]host[:port]`` checks an SSH server.

Without credentials it checks the server's version line and its host key
(like check_ssh and blackbox's ssh banner module, plus host key verification);
with a key file, the agent or a password it also logs in, and with
``command`` it runs a command and checks its exit status and output.

This module is the probe: it reads the files and secrets a check needs into a
plan, connects with ``ctx.connect_socket``, runs the SSH conversation over
that socket (:mod:`anyprobe.plugins._ssh_connect`, on
asyncio through the run's :class:`~anyprobe.bridge.AsyncioBridge`) and judges
its report. The options are in :mod:`anyprobe.plugins._ssh_options`, the
service of ``anyprobe demo`` in :mod:`anyprobe.plugins._demo_ssh`.
"""

from __future__ import annotations

import getpass
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import SplitResult

import anyio

import anyprobe
from anyprobe.bridge import asyncio_bridge
from anyprobe.net import describe_os_error
from anyprobe.plugins._ssh_connect import Plan, Progress, Report, converse, printable
from anyprobe.plugins._ssh_options import SshOptions, expand_path

__all__ = ["SshOptions", "SshProbe"]

_FILES_KEY = "anyprobe.plugins.ssh:files"


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
        # password or passphrase must not reveal it: core masks the options'
        # secrets (password_env and key_passphrase_env are SecretEnv options).
        assert target.port is not None
        if "asyncssh" not in sys.modules:
            # Importing asyncssh takes a few hundred ms: never on the event loop.
            await anyio.to_thread.run_sync(importlib.import_module, "asyncssh")
        plan = await _make_plan(target, options, ctx)
        progress = Progress()
        # asyncssh reads the socket itself, on the bridge's loop: it gets one
        # before any stream has read from it (the version line is its to read).
        async with ctx.connect_socket(
            target.host, target.port, ip_family=options.ip_family
        ) as sock:
            ctx.metrics["address"] = sock.getpeername()[0]
            try:
                report = await asyncio_bridge(ctx).run(converse, plan, sock, progress)
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
) -> Plan:
    """Read the files and secrets the conversation needs."""
    assert target.port is not None
    key_data = key_passphrase = password = None
    if options.key_file is not None:
        key_data = await _read_file(ctx, options.key_file, "key_file")
    if options.key_passphrase_env is not None:
        key_passphrase = options.key_passphrase_env.get_secret_value()
    if options.password_env is not None:
        password = options.password_env.get_secret_value()
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
            default = expand_path(known_hosts_name)
            # A user without a known_hosts file knows no host: every key is unknown.
            data = (
                await _read_file(ctx, str(default), "known_hosts")
                if await anyio.Path(default).is_file()
                else b""
            )
        known_hosts_text = data.decode("utf-8", "replace")
    username = urlsplit_username(target.url) or _local_user()
    return Plan(
        host=target.host,
        port=target.port,
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
    resolved = expand_path(path)
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


async def _verdict(plan: Plan, options: SshOptions, report: Report) -> anyprobe.Outcome:
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
        command = printable(plan.command.encode(), 40)
        if report.exit_status is None:
            raise anyprobe.CheckFailed(
                f"command '{command}' was killed by signal {report.exit_signal or '?'}"
            )
        if report.exit_status != options.expect_exit_status:
            first_line = report.error_output.strip().splitlines()[:1]
            said = f": {printable(first_line[0])}" if first_line else ""
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
                    f"(got {printable(report.output.strip())!r})"
                )
        parts.append(f"'{command}' exited {report.exit_status}")
    return anyprobe.Outcome.ok(", ".join(parts))


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(SshProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from anyprobe.plugins._demo_ssh import demo_services

    register(demo_services)
