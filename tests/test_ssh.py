"""The SSH probe against an asyncssh server, OpenSSH's sshd and misbehaving ports."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Result, Status
from anyprobe.net import address_policy
from tests.servers.ssh import LOTS_BYTES, OpenSsh, ScriptedPort, SshServer

pytestmark = pytest.mark.anyio

PASSWORD_ENV = "ANYPROBE_TEST_SSH_PASSWORD"


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, **options: Any
) -> Result:
    results = await anyprobe.check([url], options=options, manager=manager, timeout=seconds)
    assert len(results) == 1
    return results[0]


async def test_banner_check_reports_version_and_verified_host_key(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(manager, ssh_server.url, known_hosts=str(ssh_server.known_hosts))
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("SSH-2.0-AsyncSSH_")
    assert "host key ssh-ed25519 verified" in result.summary
    assert result.metrics["protocol_version"] == "2.0"
    assert result.metrics["server_version"].startswith("SSH-2.0-AsyncSSH_")
    assert result.metrics["host_key_type"] == "ssh-ed25519"
    assert result.metrics["host_key_fingerprint"] == ssh_server.host_key_fingerprint
    assert result.metrics["host_key_verified"] is True
    assert set(result.phases) == {"resolve", "connect", "handshake", "auth"}


async def test_expect_version_mismatch_is_critical(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        expect_version="OpenSSH_9",
    )
    assert result.status is Status.CRITICAL
    assert "does not match expect_version 'OpenSSH_9'" in result.summary
    assert result.error is not None and result.error.phase == "handshake"


async def test_expect_version_match_is_ok(manager: PluginManager, ssh_server: SshServer) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        host_key_fingerprint=ssh_server.host_key_fingerprint,
        expect_version=r"AsyncSSH_2\.",
    )
    assert result.status is Status.OK, result.summary


async def test_key_auth_and_command_exit_0(manager: PluginManager, ssh_server: SshServer) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="echo all good",
        expect_output="^all good$",
    )
    assert result.status is Status.OK, result.summary
    assert "logged in as probe" in result.summary
    assert "'echo all good' exited 0" in result.summary
    assert result.metrics["exit_status"] == 0
    assert set(result.phases) == {"resolve", "connect", "handshake", "auth", "command"}


async def test_password_auth_reads_the_env_var_and_never_shows_it(
    manager: PluginManager, ssh_server: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, ssh_server.password)
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        password_env=PASSWORD_ENV,
        command="true",
    )
    assert result.status is Status.OK, result.summary
    assert ssh_server.password not in repr(result.as_dict())


async def test_wrong_password_is_critical_in_auth(
    manager: PluginManager, ssh_server: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        password_env=PASSWORD_ENV,
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "authentication failed for user probe (tried password)"
    assert result.error is not None and result.error.phase == "auth"
    assert "not the password" not in repr(result.as_dict())


@pytest.mark.parametrize("field", ["password_env", "key_passphrase_env"])
@pytest.mark.parametrize(("value", "problem"), [(None, "is not set"), ("", "is empty")])
def test_an_unset_or_empty_secret_variable_is_refused_before_running(
    manager: PluginManager,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    value: str | None,
    problem: str,
) -> None:
    if value is None:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSWORD_ENV, value)
    with pytest.raises(anyprobe.OptionsError) as info:
        anyprobe.prepare(["ssh://127.0.0.1"], manager=manager, options={field: PASSWORD_ENV})
    assert str(info.value) == (
        f"options: check ssh://127.0.0.1: field '{field}': "
        f"environment variable {PASSWORD_ENV} {problem}"
    )


async def test_wrong_key_is_critical(manager: PluginManager, ssh_server: SshServer) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.wrong_key),
        command="true",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "authentication failed for user probe (tried key_file)"
    assert result.error is not None and result.error.phase == "auth"


async def test_exit_status_3_is_critical_with_stderr(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="fail",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "command 'fail' exited 3, expected 0: failing on purpose"
    assert result.metrics["exit_status"] == 3


async def test_expected_exit_status_3_is_ok(manager: PluginManager, ssh_server: SshServer) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="fail",
        expect_exit_status=3,
    )
    assert result.status is Status.OK, result.summary


async def test_lots_of_output_is_read_up_to_the_cap(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="lots",
        expect_output="^x{1000}x{23}\n",  # RE2 caps a count at 1000
        max_output_bytes=4096,
    )
    assert result.status is Status.OK, result.summary
    assert result.metrics["output_bytes"] == LOTS_BYTES
    assert result.metrics["output_truncated"] is True


async def test_output_mismatch_is_critical(manager: PluginManager, ssh_server: SshServer) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="echo degraded",
        expect_output="^ok",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "output of 'echo degraded' does not match '^ok' (got 'degraded')"


async def test_hanging_command_times_out_in_command_phase(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(
        manager,
        ssh_server.url,
        seconds=1.0,
        known_hosts=str(ssh_server.known_hosts),
        key_file=str(ssh_server.keys.client_key),
        command="hang",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 1 s during command"


async def test_unknown_host_key_without_login_is_ok_and_says_it_was_not_verified(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    """No credentials are sent: as check_ssh and blackbox_exporter, ok, flagged."""
    empty = ssh_server.keys.directory / "empty_known_hosts"
    empty.write_text("")
    result = await check_one(manager, ssh_server.url, known_hosts=str(empty))
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith(
        f"host key ssh-ed25519 {ssh_server.host_key_fingerprint} NOT verified (not in {empty})"
    )
    assert result.metrics["host_key_verified"] is False


async def test_unknown_host_key_with_a_login_is_critical_with_fingerprint(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    empty = ssh_server.keys.directory / "empty_known_hosts"
    empty.write_text("")
    result = await check_one(
        manager,
        ssh_server.url,
        known_hosts=str(empty),
        key_file=str(ssh_server.keys.client_key),
        command="echo all good",
    )
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"unknown host key for [127.0.0.1]:{ssh_server.port}: "
        f"ssh-ed25519 {ssh_server.host_key_fingerprint} is not in {empty}"
    )
    assert result.error is not None and result.error.phase == "handshake"


async def test_changed_host_key_is_critical_with_both_fingerprints(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    import asyncssh

    other = asyncssh.import_private_key(ssh_server.keys.other_host_key_data)
    stale = ssh_server.write_known_hosts("stale_known_hosts", other.export_public_key())
    result = await check_one(manager, ssh_server.url, known_hosts=str(stale))
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"HOST KEY CHANGED for [127.0.0.1]:{ssh_server.port}: ")
    assert f"server offered ssh-ed25519 {ssh_server.host_key_fingerprint}" in result.summary
    assert other.get_fingerprint("sha256") in result.summary


async def test_fingerprint_mismatch_is_critical(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    wrong = "SHA256:" + "A" * 43
    result = await check_one(manager, ssh_server.url, host_key_fingerprint=wrong)
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"host key mismatch for [127.0.0.1]:{ssh_server.port}: server offered "
        f"ssh-ed25519 {ssh_server.host_key_fingerprint}, expected {wrong}"
    )


async def test_unverified_host_key_is_flagged(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    result = await check_one(manager, ssh_server.url, verify_host_key=False)
    assert result.status is Status.OK
    assert "NOT verified (verify_host_key = false)" in result.summary
    assert ssh_server.host_key_fingerprint in result.summary
    assert result.metrics["host_key_verified"] is False


async def test_non_ssh_banner_is_critical(
    manager: PluginManager, non_ssh_port: ScriptedPort
) -> None:
    result = await check_one(manager, f"ssh://127.0.0.1:{non_ssh_port.port}", verify_host_key=False)
    assert result.status is Status.CRITICAL
    assert result.summary == "not an SSH server: it sent '220 mail.example.test ESMTP ready'"
    assert result.error is not None and result.error.phase == "handshake"


async def test_silent_port_times_out_in_handshake(
    manager: PluginManager, silent_port: ScriptedPort
) -> None:
    result = await check_one(
        manager, f"ssh://127.0.0.1:{silent_port.port}", seconds=0.5, verify_host_key=False
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.5 s during handshake"


async def test_refused_port_is_critical_in_connect(
    manager: PluginManager, closed_port: int
) -> None:
    result = await check_one(manager, f"ssh://127.0.0.1:{closed_port}", verify_host_key=False)
    assert result.status is Status.CRITICAL
    assert result.summary == "connection refused"
    assert result.error is not None and result.error.phase == "connect"


async def test_the_connect_is_the_toolkit_s(manager: PluginManager, ssh_server: SshServer) -> None:
    # Resolve and connect on the caller's loop (ctx.connect_socket), then the
    # version line read by the conversation from its copy of the socket.
    [result] = await anyprobe.check(
        [ssh_server.url],
        manager=manager,
        options={"known_hosts": str(ssh_server.known_hosts)},
        explain=True,
    )
    assert result.status is Status.OK, result.summary
    assert result.metrics["address"] == "127.0.0.1"
    messages = [event.message for event in result.trace]
    assert messages[:3] == [
        "resolved 127.0.0.1 to 127.0.0.1",
        f"connected to 127.0.0.1 port {ssh_server.port}",
        f"server version: {result.metrics['server_version']}",
    ]
    with address_policy(lambda host, addresses: f"{host} is not allowed"):
        [result] = await anyprobe.check([ssh_server.url], manager=manager)
    assert result.status is Status.CRITICAL
    assert result.summary == "127.0.0.1 is not allowed"
    assert result.error is not None and result.error.phase == "resolve"
    [result] = await anyprobe.check(
        [ssh_server.url], manager=manager, options={"ip_family": "ipv6"}
    )
    assert result.summary == "127.0.0.1 is not an ipv6 address"


async def test_openssh_key_auth_and_command(
    manager: PluginManager, openssh_server: OpenSsh
) -> None:
    result = await check_one(
        manager,
        openssh_server.url,
        known_hosts=str(openssh_server.known_hosts),
        key_file=str(openssh_server.client_key),
        command="echo hello from sshd; exit 0",
        expect_output="^hello from sshd$",
    )
    assert result.status is Status.OK, result.summary
    assert result.metrics["server_version"].startswith("SSH-2.0-OpenSSH_")
    assert result.metrics["host_key_fingerprint"] == openssh_server.host_key_fingerprint


async def test_openssh_banner_and_exit_status(
    manager: PluginManager, openssh_server: OpenSsh
) -> None:
    banner = await check_one(
        manager,
        openssh_server.url,
        host_key_fingerprint=openssh_server.host_key_fingerprint,
        expect_version="OpenSSH_",
    )
    assert banner.status is Status.OK, banner.summary
    failing = await check_one(
        manager,
        openssh_server.url,
        known_hosts=str(openssh_server.known_hosts),
        key_file=str(openssh_server.client_key),
        command="echo broken >&2; exit 3",
    )
    assert failing.status is Status.CRITICAL
    assert failing.summary.endswith("exited 3, expected 0: broken")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": "true"}, "command needs credentials"),
        ({"password_env": "hunter2!"}, "NAME of an environment variable"),
        ({"host_key_fingerprint": "abc"}, "SHA256:"),
        ({"verify_host_key": False, "known_hosts": "/x"}, "contradicts"),
        ({"expect_version": "("}, "not a regular expression"),
    ],
)
def test_bad_options_are_refused_before_running(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(anyprobe.UsageError, match=message):
        anyprobe.prepare(["ssh://127.0.0.1"], manager=manager, options=options)


def test_password_in_url_is_refused(manager: PluginManager) -> None:
    with pytest.raises(anyprobe.TargetError, match="password_env"):
        anyprobe.prepare(["ssh://root:secret@127.0.0.1"], manager=manager)


def test_default_port_is_22(manager: PluginManager) -> None:
    _, targets = anyprobe.prepare(["ssh://deploy@host.example"], manager=manager)
    assert targets[0].port == 22


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("anyprobe-asyncio-bridge")]


@pytest.mark.parametrize("fixture", ["stalled_kex_port", "silent_port"])
async def test_deadline_mid_handshake_leaves_no_thread_or_socket(
    manager: PluginManager, fixture: str, request: pytest.FixtureRequest, anyio_backend: str
) -> None:
    server: ScriptedPort = request.getfixturevalue(fixture)
    threads, files = set(threading.enumerate()), open_files()
    result = await check_one(
        manager, f"ssh://127.0.0.1:{server.port}", seconds=0.5, verify_host_key=False
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.5 s during handshake"
    assert server.accepted.is_set()
    assert await anyio.to_thread.run_sync(server.closed.wait, 5), "server saw no close"
    assert bridge_threads() == []
    assert _new_threads(threads, anyio_backend) == []
    assert open_files() == files


async def test_outer_cancellation_mid_handshake_closes_the_connection(
    manager: PluginManager, stalled_kex_port: ScriptedPort, anyio_backend: str
) -> None:
    threads, files = set(threading.enumerate()), open_files()
    with anyio.move_on_after(0.5) as scope:
        await anyprobe.check(
            [f"ssh://127.0.0.1:{stalled_kex_port.port}"],
            manager=manager,
            timeout=30,
            options={"verify_host_key": False},
        )
    assert scope.cancelled_caught
    assert stalled_kex_port.accepted.is_set()
    assert await anyio.to_thread.run_sync(stalled_kex_port.closed.wait, 5)
    assert bridge_threads() == []
    assert _new_threads(threads, anyio_backend) == []
    assert open_files() == files


def _new_threads(before: set[threading.Thread], backend: str) -> list[str]:
    """Threads started since ``before`` that anyprobe would have leaked.

    Not counted: the idle worker the test's own ``anyio.to_thread`` call left
    in the pool, and on asyncio the host loop's default executor, which
    asyncssh uses when it runs directly on the host loop and which that loop
    shuts down when it ends (as ``asyncio.run`` does). On trio the bridge
    loop's executor threads (also ``asyncio_N``) do count.
    """
    host_owned = ["AnyIO worker thread", "Trio thread", "Trio worker"]
    if backend == "asyncio":
        host_owned.append("asyncio_")
    new = set(threading.enumerate()) - before
    return [t.name for t in new if not t.name.startswith(tuple(host_owned))]


async def test_many_checks_at_once_through_one_bridge(
    manager: PluginManager, ssh_server: SshServer
) -> None:
    urls = [f"ssh://probe@127.0.0.1:{ssh_server.port}" for _ in range(20)]
    results = await anyprobe.check(
        urls,
        manager=manager,
        options={"host_key_fingerprint": ssh_server.host_key_fingerprint},
        concurrency=10,
    )
    assert [r.status for r in results] == [Status.OK] * 20
    assert bridge_threads() == []


async def test_demo_rows_get_their_verdicts(manager: PluginManager) -> None:
    from anyprobe.plugins._demo_ssh import demo_services

    async with demo_services() as rows:
        for row in rows:
            result = await check_one(manager, row.url, **row.options)
            assert result.status is row.expect, (row.name, result.summary)
    assert bridge_threads() == []
