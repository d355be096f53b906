"""The asyncio bridge: results, errors and cancellation cross it; nothing outlives it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Status
from anyprobe.bridge import AsyncioBridge, BridgeClosedError, asyncio_bridge

pytestmark = pytest.mark.anyio


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("anyprobe-asyncio-bridge")]


async def loop_and_thread(value: int) -> tuple[int, int]:
    """Runs on the asyncio loop; says which loop and thread it ran on."""
    await asyncio.sleep(0)
    return value * 2, threading.get_ident()


async def test_result_comes_back_from_the_bridge_thread() -> None:
    async with AsyncioBridge(direct_on_asyncio=False) as bridge:
        doubled, thread_id = await bridge.run(loop_and_thread, 21)
        assert doubled == 42
        assert bridge.thread is not None
        assert thread_id == bridge.thread.ident != threading.get_ident()
    assert bridge_threads() == []


async def test_asyncio_host_runs_directly_and_trio_host_crosses(anyio_backend: str) -> None:
    async with AsyncioBridge() as bridge:
        _, thread_id = await bridge.run(loop_and_thread, 1)
        if anyio_backend == "asyncio":
            assert thread_id == threading.get_ident()
            assert bridge.thread is None
        else:
            assert thread_id != threading.get_ident()
            assert bridge.thread is not None and bridge.thread.ident == thread_id
    assert bridge_threads() == []


async def test_exception_is_raised_in_the_caller() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("from the asyncio side")

    async with AsyncioBridge(direct_on_asyncio=False) as bridge:
        with pytest.raises(LookupError, match="from the asyncio side"):
            await bridge.run(fails)
        # The bridge still works after a failed call.
        assert (await bridge.run(loop_and_thread, 2))[0] == 4


async def test_a_function_returning_a_plain_awaitable_is_called_on_the_loop() -> None:
    def not_a_coroutine_function() -> asyncio.Future[str]:
        # Like asyncssh.connect(): needs a running loop when called.
        future = asyncio.get_running_loop().create_future()
        future.get_loop().call_soon(future.set_result, "done")
        return future

    async with AsyncioBridge(direct_on_asyncio=False) as bridge:
        assert await bridge.run(not_a_coroutine_function) == "done"


async def test_an_error_calling_the_function_comes_back() -> None:
    def broken() -> Any:
        raise ValueError("before any await")

    async with AsyncioBridge(direct_on_asyncio=False) as bridge:
        with pytest.raises(ValueError, match="before any await"):
            await bridge.run(broken)


async def test_cancelling_the_caller_cancels_the_asyncio_task_and_waits_for_cleanup() -> None:
    started = threading.Event()
    cleaned = threading.Event()

    async def hangs() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself awaits
            cleaned.set()

    async with AsyncioBridge(direct_on_asyncio=False) as bridge:
        with anyio.move_on_after(0.2) as scope:
            await bridge.run(hangs)
        assert scope.cancelled_caught
        assert started.is_set()
        # The caller waited for the cleanup before moving on.
        assert cleaned.is_set()
    assert bridge_threads() == []


async def test_a_cleanup_that_never_ends_holds_the_caller_only_for_cleanup_timeout() -> None:
    release = threading.Event()

    async def refuses_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            while not release.is_set():
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    continue

    bridge = AsyncioBridge(direct_on_asyncio=False, cleanup_timeout=0.2)
    with anyio.move_on_after(0.1) as scope:
        await bridge.run(refuses_to_stop)
    assert scope.cancelled_caught
    release.set()
    await bridge.aclose()
    assert bridge_threads() == []


async def test_aclose_cancels_leftover_tasks_and_ends_the_thread() -> None:
    cancelled = threading.Event()

    async def background() -> None:
        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    bridge = AsyncioBridge(direct_on_asyncio=False)
    await bridge.run(background)
    thread = bridge.thread
    assert thread is not None and thread.is_alive()
    await bridge.aclose()
    assert cancelled.is_set()
    assert not thread.is_alive()
    assert bridge.thread is None
    await bridge.aclose()  # twice is fine


async def test_a_closed_bridge_refuses_calls() -> None:
    bridge = AsyncioBridge(direct_on_asyncio=False)
    await bridge.aclose()
    with pytest.raises(BridgeClosedError):
        await bridge.run(loop_and_thread, 1)


async def test_many_concurrent_calls_each_get_their_own_result() -> None:
    results: dict[int, int] = {}

    async with AsyncioBridge(direct_on_asyncio=False) as bridge:

        async def one(value: int) -> None:
            results[value] = (await bridge.run(loop_and_thread, value))[0]

        async with anyio.create_task_group() as tg:
            for value in range(50):
                tg.start_soon(one, value)
    assert results == {value: value * 2 for value in range(50)}


class AsyncioOnlyProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """A third-party style probe whose library only runs on asyncio."""

    name = "asyncio-only"
    schemes = ("asyncio-only",)
    default_ports = {"asyncio-only": 1}

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        value, thread_id = await asyncio_bridge(ctx).run(loop_and_thread, 5)
        return anyprobe.Outcome.ok(f"got {value}", metrics={"thread": thread_id})


class AsyncioOnlyPlugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(AsyncioOnlyProbe)


async def test_the_runs_bridge_is_shared_and_closed_when_the_run_ends(
    manager: PluginManager, anyio_backend: str
) -> None:
    manager.register(AsyncioOnlyPlugin(), name="asyncio-only")
    before = set(threading.enumerate())
    urls = [f"asyncio-only://host{i}" for i in range(5)]
    results = await anyprobe.check(urls, manager=manager)
    assert [r.status for r in results] == [Status.OK] * 5
    assert {r.summary for r in results} == {"got 10"}
    # One bridge for the whole run: every check ran on the same thread.
    threads = {r.metrics["thread"] for r in results}
    assert len(threads) == 1
    if anyio_backend == "trio":
        assert threads != {threading.get_ident()}
    assert bridge_threads() == []
    # Nothing is left running but anyio's idle worker threads (the run loads
    # the probes' dependencies in one; anyio keeps it a while for reuse).
    left = [t for t in set(threading.enumerate()) - before if t.name != "AnyIO worker thread"]
    assert left == []
