"""Probes for testing the core: behaviour chosen by the target's host.

``test://ok``, ``test://raise``, ``test://hang``, ``test://fail``,
``test://flaky`` (fails on its first attempt), ``test://slow`` (sleeps
``options.sleep`` seconds), ``test://cancel-me`` (waits forever in phase
"wait"). Registered with ``manager.register(tests.probes)``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import SplitResult

import anyio
from pydantic import Field

import anyprobe


class ScriptedOptions(anyprobe.ProbeOptions):
    sleep: float = Field(0.0, ge=0, description="Seconds to sleep in a slow check.")


class ScriptedProbe(anyprobe.Probe[ScriptedOptions]):
    name = "scripted"
    schemes = ("test",)
    Options = ScriptedOptions
    attempts: Counter[str] = Counter()
    running = 0
    most_running = 0

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: ScriptedOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        kind = target.host.split("-")[0]
        self.attempts[target.url] += 1
        cls = type(self)
        cls.running += 1
        cls.most_running = max(cls.most_running, cls.running)
        try:
            return await self._behave(kind, target, options, ctx)
        finally:
            cls.running -= 1

    async def _behave(
        self,
        kind: str,
        target: anyprobe.Target,
        options: ScriptedOptions,
        ctx: anyprobe.CheckContext,
    ) -> anyprobe.Outcome:
        if kind == "raise":
            with ctx.phase("parse"):
                raise ValueError("bad reply")
        if kind == "hang":
            with ctx.phase("connect"):
                await anyio.sleep_forever()
        if kind == "fail":
            raise anyprobe.CheckFailed(
                "connection refused", error=ConnectionRefusedError(111, "refused")
            )
        if kind == "flaky" and self.attempts[target.url] == 1:
            raise anyprobe.CheckFailed("first attempt fails")
        if kind == "slow":
            await anyio.sleep(options.sleep)
        if kind == "none":
            return None  # type: ignore[return-value]
        ctx.trace("did the thing")
        ctx.metrics["answer"] = 42
        return anyprobe.Outcome.ok(f"{kind} fine")


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(ScriptedProbe)


class BlockingProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """Blocks the event loop with time.sleep(host seconds / 10): a badly written plugin."""

    name = "blocking"
    schemes = ("block",)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        import time

        time.sleep(int(target.host) / 10)  # noqa: ASYNC251 - blocking on purpose
        return anyprobe.Outcome.ok("slept")


@anyprobe.hookimpl(specname="anyprobe_register_probes")
def register_blocking(register: Any) -> None:
    register(BlockingProbe)
