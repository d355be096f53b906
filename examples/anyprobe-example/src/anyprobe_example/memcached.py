"""``memcached://HOST[:PORT]``: a memcached server answers over its text protocol.

The check asks ``version`` (phase ``version``), then, unless ``stats = false``,
``stats`` (phase ``stats``), whose numbers become metrics; ``quit`` ends it.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import anyprobe
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyprobe.net import connect_tcp, fail_from_os_error, resolve
from pydantic import Field, field_validator

#: Longest reply line read, and most ``STAT`` lines accepted.
MAX_LINE = 2048
MAX_STATS = 500


class MemcachedOptions(anyprobe.ProbeOptions):
    expect_version: str | None = Field(
        default=None,
        description="Regular expression the server's version must match, e.g. '^1\\.6\\.'.",
    )
    stats: bool = Field(
        default=True,
        description="Also read stats: connections, hit ratio, evictions become metrics.",
    )
    max_connections: int | None = Field(
        default=None, gt=0, description="A warning when curr_connections is at or above this."
    )

    @field_validator("expect_version")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)


class MemcachedProbe(anyprobe.Probe[MemcachedOptions]):
    name = "memcached"
    schemes = ("memcached",)
    Options = MemcachedOptions
    default_ports = {"memcached": 11211}
    description = "memcached's text protocol: version, then stats as metrics."

    async def check(
        self, target: anyprobe.Target, options: MemcachedOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None  # default_ports gives one
        with ctx.phase("resolve"):
            addresses = await resolve(target.host, target.port)
        with ctx.phase("connect"):
            stream, address = await connect_tcp(addresses, target.port)
        ctx.trace(f"connected to {address} port {target.port}")
        async with stream:
            try:
                return await self._converse(stream, options, ctx)
            except (OSError, anyio.BrokenResourceError) as exc:
                raise fail_from_os_error(exc, "connection lost") from None

    async def _converse(
        self, stream: SocketStream, options: MemcachedOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        reader = BufferedByteReceiveStream(stream)
        with ctx.phase("version"):
            reply = await ask(stream, reader, "version")
        if not reply.startswith("VERSION "):
            raise anyprobe.CheckFailed(f"expected a VERSION reply, got {reply[:60]!r}")
        version = reply.removeprefix("VERSION ").strip()
        ctx.metrics["version"] = version
        if options.expect_version and not re.search(options.expect_version, version):
            raise anyprobe.CheckFailed(
                f"version {version} does not match {options.expect_version!r}"
            )
        if not options.stats:
            await stream.send(b"quit\r\n")
            return anyprobe.Outcome.ok(f"memcached {version}")
        with ctx.phase("stats"):
            stats = await read_stats(stream, reader, ctx)
        await stream.send(b"quit\r\n")
        metrics = stats_metrics(stats)
        ctx.metrics.update(metrics)
        connections = metrics.get("curr_connections", 0)
        summary = f"memcached {version}: {connections} connections"
        if "hit_ratio" in metrics:
            summary += f", {metrics['hit_ratio']:.0%} hits"
        if options.max_connections and connections >= options.max_connections:
            return anyprobe.Outcome.warning(
                f"{summary} (max_connections {options.max_connections})"
            )
        return anyprobe.Outcome.ok(summary)


async def ask(stream: SocketStream, reader: BufferedByteReceiveStream, command: str) -> str:
    """Send ``command`` and return the first reply line."""
    await stream.send(command.encode() + b"\r\n")
    return await read_line(reader, command)


async def read_line(reader: BufferedByteReceiveStream, command: str) -> str:
    try:
        line = await reader.receive_until(b"\n", MAX_LINE)
    except anyio.IncompleteRead:
        raise anyprobe.CheckFailed(f"connection closed before the reply to {command}") from None
    except anyio.DelimiterNotFound:
        raise anyprobe.CheckFailed(f"reply to {command} longer than {MAX_LINE} bytes") from None
    text = line.rstrip(b"\r").decode("utf-8", "replace")
    if text in ("ERROR", "CLIENT_ERROR", "SERVER_ERROR") or text.startswith(
        ("CLIENT_ERROR ", "SERVER_ERROR ")
    ):
        raise anyprobe.CheckFailed(f"the server answered {text!r} to {command}")
    return text


async def read_stats(
    stream: SocketStream, reader: BufferedByteReceiveStream, ctx: anyprobe.CheckContext
) -> dict[str, str]:
    """``stats``: the ``STAT name value`` lines up to ``END``."""
    await stream.send(b"stats\r\n")
    stats: dict[str, str] = {}
    for _ in range(MAX_STATS):
        line = await read_line(reader, "stats")
        if line == "END":
            ctx.trace(f"{len(stats)} stats")
            return stats
        kind, _, rest = line.partition(" ")
        name, _, value = rest.partition(" ")
        if kind != "STAT" or not name:
            raise anyprobe.CheckFailed(f"expected a STAT line, got {line[:60]!r}")
        stats[name] = value
    raise anyprobe.CheckFailed(f"more than {MAX_STATS} stats lines without END")


def stats_metrics(stats: dict[str, str]) -> dict[str, Any]:
    """The stats worth exporting, as numbers; ``hit_ratio`` when there were gets."""
    metrics: dict[str, Any] = {}
    for name in ("uptime", "curr_connections", "curr_items", "evictions"):
        if stats.get(name, "").isdigit():
            metrics[name] = int(stats[name])
    hits, misses = stats.get("get_hits", ""), stats.get("get_misses", "")
    if hits.isdigit() and misses.isdigit() and int(hits) + int(misses):
        metrics["hit_ratio"] = int(hits) / (int(hits) + int(misses))
    return metrics


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(MemcachedProbe)
