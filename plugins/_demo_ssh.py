"""The SSH service of ``anyprobe demo``: an asyncssh server on loopback, with
the checks that show what the SSH probe does (registered by the ssh plugin's
``anyprobe_demo_services``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

import anyprobe
from anyprobe.bridge import AsyncioBridge

__all__ = ["demo_services"]


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
