"""The embedding API: run checks from your own asyncio or trio program.

    import anyprobe

    async def main():
        async for result in anyprobe.stream(["tcp://127.0.0.1:22", "https://example.com"]):
            print(result.name, result.status.value, result.summary)

Nothing here starts an event loop (except :func:`check_sync`), prints, or
keeps global state: each call owns its plugin manager, limits and streams.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import anyio

from .defaults import DEFAULT_TIMEOUT
from .manager import PluginManager, default_manager
from .model import Result, Target
from .reporter import Reporter, ResultStream
from .run import Run
from .targets import build_targets


def prepare(
    targets: Iterable[str | Target],
    *,
    manager: PluginManager | None = None,
    plugins: Iterable[object] = (),
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
) -> tuple[PluginManager, Sequence[Target]]:
    """Validate ``targets`` (URLs or ready Targets) before anything runs.

    Raises :class:`~anyprobe.UsageError` (``TargetError``, ``OptionsError``)
    for the first bad one.
    """
    manager = manager or default_manager(plugins=plugins)
    ready: list[Target] = []

    def urls() -> Iterator[str]:
        for item in targets:
            if isinstance(item, Target):
                ready.append(item)
            else:
                yield item

    built = build_targets(
        manager,
        urls(),
        options=options,
        labels=labels,
        timeout=timeout,
        retries=retries,
        options_source="options",
    )
    return manager, [*ready, *built] if ready else built


class ResultIterator:
    """The results of :func:`stream`: iterate them, ideally inside ``async with``.

    ``async with anyprobe.stream(targets) as results: async for r in results``
    always cleans up at once, also when the loop is left early or cancelled
    from outside (on trio, leaving an unclosed stream to the garbage collector
    would corrupt the cancel scopes). A plain ``async for`` over
    ``anyprobe.stream(...)`` is fine when it runs to the end.
    """

    def __init__(self, results: AsyncGenerator[Result, None]) -> None:
        self._results = results

    def __aiter__(self) -> AsyncGenerator[Result, None]:
        return self._results

    async def __anext__(self) -> Result:
        return await self._results.__anext__()

    async def aclose(self) -> None:
        """Stop the run (checks still running are cancelled) and clean up."""
        await self._results.aclose()

    async def __aenter__(self) -> ResultIterator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._results.aclose()


def stream(
    targets: Iterable[str | Target],
    *,
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    explain: bool = False,
    plugins: Iterable[object] = (),
    manager: PluginManager | None = None,
    reporters: Iterable[tuple[str, Reporter[Any]]] = (),
) -> ResultIterator:
    """Check ``targets`` and give each result as it completes.

    ``options`` apply to every target whose probe has them (like ``--set``);
    ``limiter`` lets several runs share one concurrency budget; ``plugins``
    are registered next to the installed ones; ``reporters`` receive every
    result too. Every target is validated before the first check starts (on
    the first iteration). Use it as ``async with anyprobe.stream(...) as
    results:`` to stop early or under an outer timeout safely; see
    :class:`ResultIterator`.
    """
    return ResultIterator(
        _stream(
            targets,
            options=options,
            labels=labels,
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            per_host=per_host,
            limiter=limiter,
            explain=explain,
            plugins=plugins,
            manager=manager,
            reporters=reporters,
        )
    )


async def _stream(
    targets: Iterable[str | Target],
    *,
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - each check's, not this call's
    retries: int = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    explain: bool = False,
    plugins: Iterable[object] = (),
    manager: PluginManager | None = None,
    reporters: Iterable[tuple[str, Reporter[Any]]] = (),
) -> AsyncGenerator[Result, None]:
    manager, built = prepare(
        targets,
        manager=manager,
        plugins=plugins,
        options=options,
        labels=labels,
        timeout=timeout,
        retries=retries,
    )
    run = Run(
        built,
        manager,
        list(reporters),
        concurrency=concurrency,
        per_host=per_host,
        limiter=limiter,
        explain=explain,
    )
    await run.load_dependencies()
    receive = run.results()
    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(run.execute)
        try:
            async for result in ResultStream(receive):
                yield result
        except GeneratorExit:
            # The caller stopped iterating (aclose()): stop the run and end quietly,
            # instead of letting GeneratorExit escape into the task group.
            tg.cancel_scope.cancel()


async def check(targets: Iterable[str | Target], **kwargs: Any) -> list[Result]:
    """Check ``targets`` and return every result, in completion order.

    Takes the same keyword arguments as :func:`stream`.
    """
    async with stream(targets, **kwargs) as results:
        return [result async for result in results]


def check_sync(
    targets: Iterable[str | Target], *, backend: str = "asyncio", **kwargs: Any
) -> list[Result]:
    """:func:`check` for a script without an event loop: starts one on ``backend``."""

    async def main() -> list[Result]:
        return await check(targets, **kwargs)

    return anyio.run(main, backend=backend)
