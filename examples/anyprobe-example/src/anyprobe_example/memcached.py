"""``memcached://HOST[:PORT]``: a memcached server answers over its text protocol.

The check asks ``version`` (phase ``version``), then, unless ``stats = false``,
``stats`` (phase ``stats``), whose numbers become metrics; ``quit`` ends it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

import anyprobe
from pydantic import Field, field_validator

#: Longest reply line read, and most ``STAT`` lines accepted.
MAX_LINE = 2048
MAX_STATS = 500
ERRORS = ("ERROR", "CLIENT_ERROR", "SERVER_ERROR")


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

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        anyprobe.check_url_shape(url, text)  # memcached://HOST[:PORT], nothing more
        return super().validate_url(url, text)

    async def check(
        self, target: anyprobe.Target, options: MemcachedOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None  # default_ports gives one
        async with ctx.connect(target.host, target.port) as conn:
            with ctx.phase("version"):
                reply = await ask(conn, "version")
            if not reply.startswith("VERSION "):
                raise anyprobe.CheckFailed(f"expected a VERSION reply, got {reply[:60]!r}")
            version = ctx.metrics["version"] = reply.removeprefix("VERSION ").strip()
            wanted = options.expect_version
            if wanted and anyprobe.compile_pattern(wanted).search(version) is None:
                raise anyprobe.CheckFailed(f"version {version} does not match {wanted!r}")
            if not options.stats:
                await conn.send("quit\r\n")
                return anyprobe.Outcome.ok(f"memcached {version}")
            with ctx.phase("stats"):
                stats = await read_stats(conn, ctx)
            await conn.send("quit\r\n")
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


async def ask(conn: anyprobe.Connection, command: str) -> str:
    """Send ``command`` and return the first reply line."""
    await conn.send(f"{command}\r\n")
    return await reply_line(conn, command)


async def reply_line(conn: anyprobe.Connection, command: str) -> str:
    """The next reply line; an error reply fails the check, naming ``command``."""
    text = await conn.read_line(limit=MAX_LINE)
    if text in ERRORS or text.startswith(tuple(f"{e} " for e in ERRORS)):
        raise anyprobe.CheckFailed(f"the server answered {text!r} to {command}")
    return text


async def read_stats(conn: anyprobe.Connection, ctx: anyprobe.CheckContext) -> dict[str, str]:
    """``stats``: the ``STAT name value`` lines up to ``END``."""
    await conn.send("stats\r\n")
    stats: dict[str, str] = {}
    for _ in range(MAX_STATS):
        line = await reply_line(conn, "stats")
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
