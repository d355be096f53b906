"""``anyprobe demo``: check loopback services the plugins start, offline.

Each plugin adds services through the ``anyprobe_demo_services`` hook; every
service yields :class:`DemoCheck` rows saying which verdict it should get. The
demo runs them through the same path as ``anyprobe check`` and then compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from ._manager import PluginManager
from ._model import Result, Status, Target
from ._targets import TargetFactory


@dataclass(frozen=True)
class DemoCheck:
    """One demo row: a target on loopback and the verdict it should get."""

    name: str
    url: str
    expect: Status
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0


async def start_demo_services(
    manager: PluginManager, stack: AsyncExitStack
) -> tuple[list[Target], dict[str, Status]]:
    """Start every plugin's demo services on ``stack``; their targets and verdicts."""
    factory = TargetFactory(manager)
    targets: list[Target] = []
    expected: dict[str, Status] = {}
    for service in manager.demo_services:
        checks: Sequence[DemoCheck] = await stack.enter_async_context(service())
        for check in checks:
            targets.append(
                factory.build(
                    check.url,
                    name=check.name,
                    options=check.options,
                    labels={"demo": "true"},
                    timeout=check.timeout,
                )
            )
            expected[check.name] = check.expect
    return targets, expected


def compare(results: Sequence[Result], expected: Mapping[str, Status]) -> list[str]:
    """One line per demo row whose verdict differs from the expected one."""
    problems = []
    seen = {r.name: r for r in results}
    for name, status in expected.items():
        result = seen.get(name)
        if result is None:
            problems.append(f"{name}: no result")
        elif result.status is not status:
            problems.append(
                f"{name}: expected {status.value}, got {result.status.value} ({result.summary})"
            )
    return problems
