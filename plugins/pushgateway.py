"""The pushgateway reporter: a batch run's metrics, PUT to a Prometheus Pushgateway.

A sharded batch run (``anyprobe run checks.toml --shard auto/4``) is over
before Prometheus could scrape it; each shard pushes its results when it ends::

    anyprobe run checks.toml --shard auto/4 -r pushgateway=http://pushgateway:9091

The body is the ``prometheus`` reporter's exposition (blackbox_exporter's
metric names, the run's ``anyprobe_run_*`` metrics), PUT to
``/metrics/job/<job>/shard/<i>`` so that each shard replaces only its own
group. The shard comes from the results' ``shard`` label (``--shard`` adds it)
or, for a shard without targets, from ``ANYPROBE_SHARD_INDEX``.
"""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator

import anyprobe

PUSH_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHARD_VARIABLE = "ANYPROBE_SHARD_INDEX"


class PushgatewayError(anyprobe.AnyprobeError):
    """The Pushgateway refused the push or could not be reached."""


class PushgatewayOptions(anyprobe.ReporterOptions):
    url: str | None = Field(
        None,
        description="The Pushgateway's base URL, http://HOST:9091 (also -r pushgateway=URL).",
    )
    job: str = Field("anyprobe", min_length=1, description="The job label of the group.")
    grouping: dict[str, str] = Field(
        default_factory=dict,
        description="More grouping labels, e.g. {site = 'eu-1'}; the shard is added by itself.",
    )
    method: str = Field(
        "PUT",
        description="PUT replaces the group's metrics, POST replaces only the pushed names.",
    )
    timeout: float = Field(10.0, gt=0, description="Seconds for the push.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        value = value.upper()
        if value not in ("PUT", "POST"):
            raise ValueError("method must be PUT or POST")
        return value

    def base_url(self) -> str:
        url = self.url or self.path
        if not url or url == "-":
            raise PushgatewayError("pushgateway: no url (-r pushgateway=http://HOST:9091)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PushgatewayError(
                f"pushgateway: {anyprobe_redact(url)} is not an http(s) URL of a Pushgateway"
            )
        return url.rstrip("/")


def anyprobe_redact(url: str) -> str:
    from anyprobe.masking import redact_url

    return redact_url(url)


def group_path(job: str, grouping: dict[str, str]) -> str:
    """``/metrics/job/<job>/<label>/<value>...``, values encoded as the Pushgateway wants
    (base64 for a value with a ``/`` or an empty one)."""
    parts = ["metrics", *_pair("job", job)]
    for name, value in grouping.items():
        parts += _pair(name, value)
    return "/" + "/".join(parts)


def _pair(name: str, value: str) -> list[str]:
    if value and "/" not in value:
        return [name, quote(value, safe="")]
    encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
    return [f"{name}@base64", encoded]


def shard_of(results: list[anyprobe.Result]) -> str | None:
    """The shard the results belong to, or ``ANYPROBE_SHARD_INDEX`` without results."""
    for result in results:
        shard = result.labels.get("shard")
        if shard is not None:
            return shard
    return os.environ.get(SHARD_VARIABLE) or None


class PushgatewayReporter(anyprobe.Reporter[PushgatewayOptions]):
    """``-r pushgateway=http://pushgateway:9091``."""

    name = "pushgateway"
    Options = PushgatewayOptions
    destination = "url"
    description = "Pushes the run's metrics to a Prometheus Pushgateway (one group per shard)."

    def outputs(self) -> list[str | None]:
        return []

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        from anyprobe.plugins.prometheus import exposition

        base = self.options.base_url()  # a bad URL fails before any result is read
        collected = [result async for result in results]
        grouping = dict(self.options.grouping)
        shard = shard_of(collected)
        if shard is not None:
            grouping.setdefault("shard", shard)
        body = exposition(collected, ctx.summary).encode("utf-8")
        await self.push(base + group_path(self.options.job, grouping), body)

    async def push(self, url: str, body: bytes) -> None:
        import httpx

        shown = anyprobe_redact(url)
        try:
            async with httpx.AsyncClient(timeout=self.options.timeout) as client:
                response = await client.request(
                    self.options.method,
                    url,
                    content=body,
                    headers={"Content-Type": PUSH_CONTENT_TYPE},
                )
        except httpx.HTTPError as exc:
            raise PushgatewayError(
                f"pushgateway {shown}: {type(exc).__name__}: {exc or 'no answer'}"
            ) from None
        if response.status_code >= 300:
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            raise PushgatewayError(
                f"pushgateway {shown}: HTTP {response.status_code}" + (f": {text}" if text else "")
            )


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(PushgatewayReporter)
