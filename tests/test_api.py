"""The embedding API: results as an async iterator inside the caller's own loop."""

from __future__ import annotations

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Status, TargetError
from tests import probes

pytestmark = pytest.mark.anyio


async def test_stream_yields_results_as_they_complete(
    listening_port: int, closed_port: int
) -> None:
    seen = {}
    async with anyprobe.stream(
        [f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{closed_port}"]
    ) as results:
        async for result in results:
            seen[result.target] = result.status
    assert seen == {
        f"tcp://127.0.0.1:{listening_port}": Status.OK,
        f"tcp://127.0.0.1:{closed_port}": Status.CRITICAL,
    }


async def test_bad_target_raises_before_any_check_runs(manager: PluginManager) -> None:
    manager.register(probes)
    probes.ScriptedProbe.attempts.clear()
    with pytest.raises(TargetError):
        await anyprobe.check(["test://ok", "nope://x"], manager=manager)
    assert not probes.ScriptedProbe.attempts


async def test_two_runs_coexist_in_one_process(manager: PluginManager) -> None:
    other = PluginManager()
    other.load_entrypoints(autoload=False)
    manager.register(probes)
    results: dict[str, list[anyprobe.Result]] = {}

    async def one(name: str, mgr: PluginManager, targets: list[str]) -> None:
        results[name] = await anyprobe.check(targets, manager=mgr)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "scripted", manager, [f"test://ok-{i}" for i in range(10)])
        tg.start_soon(one, "tcp", other, ["tcp://127.0.0.1:1"])
    assert len(results["scripted"]) == 10 and len(results["tcp"]) == 1
    # The second manager never saw the test plugin: no global registry.
    assert other.probe_for_scheme("test") is None


async def test_closing_the_stream_early_cancels_the_rest(manager: PluginManager) -> None:
    manager.register(probes)
    targets = ["test://ok", *[f"test://hang-{i}" for i in range(5)]]
    async with anyprobe.stream(targets, manager=manager, timeout=60) as results:
        async for result in results:
            assert result.status is Status.OK
            break


async def test_outer_timeout_around_the_stream_unwinds_cleanly(manager: PluginManager) -> None:
    import gc
    import warnings

    manager.register(probes)
    targets = ["test://ok", *[f"test://hang-{i}" for i in range(5)]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with anyio.move_on_after(0.2) as scope:
            async with anyprobe.stream(targets, manager=manager, timeout=60) as results:
                async for _ in results:
                    await anyio.sleep(30)
        gc.collect()
    assert scope.cancelled_caught
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_check_sync_runs_its_own_loop(anyio_backend: str, listening_port: int) -> None:
    [result] = anyprobe.check_sync([f"tcp://127.0.0.1:{listening_port}"], backend=anyio_backend)
    assert result.status is Status.OK


async def test_options_apply_to_the_probes_that_have_them(
    manager: PluginManager, listening_port: int
) -> None:
    manager.register(probes)
    results = await anyprobe.check(
        [f"tcp://127.0.0.1:{listening_port}", "test://slow"],
        manager=manager,
        options={"ip_family": "ipv4", "sleep": 0.001},
    )
    assert {r.status for r in results} == {Status.OK}
    with pytest.raises(anyprobe.OptionsError) as error:
        await anyprobe.check(["test://ok"], manager=manager, options={"slep": 1})
    assert "did you mean 'sleep'?" in str(error.value)


async def test_stream_hands_over_every_result_when_more_finish_at_once_than_it_buffers(
    manager: PluginManager,
) -> None:
    # 1,500 workers each finish a check per turn of the event loop: more than
    # the reporters' buffer (1,024) wait for the reader at once.
    manager.register(probes)
    urls = [f"test://ok-{i}" for i in range(3000)]
    seen = []
    async with anyprobe.stream(urls, manager=manager, concurrency=1500) as results:
        async for result in results:
            seen.append(result.target)
    assert sorted(seen) == sorted(urls)
    assert results.summary is not None and results.summary.counts == {Status.OK: 3000}


async def test_a_reader_that_cancels_itself_stops_though_results_keep_waiting(
    manager: PluginManager,
) -> None:
    # Results already waiting are handed over without a trip through the event
    # loop each, but with a checkpoint often enough for a cancellation to land.
    from anyprobe._api import CHECKPOINT_EVERY

    manager.register(probes)
    urls = [f"test://ok-{i}" for i in range(3 * CHECKPOINT_EVERY)]
    seen = 0
    with anyio.CancelScope() as scope:
        async with anyprobe.stream(urls, manager=manager, concurrency=50) as results:
            async for _ in results:
                seen += 1
                scope.cancel()
    assert scope.cancelled_caught
    assert 1 <= seen <= CHECKPOINT_EVERY
    assert results.summary is None


async def test_check_returns_what_stream_gives(manager: PluginManager) -> None:
    manager.register(probes)
    urls = ["test://ok", "test://fail", "test://raise", "test://ok-2"]
    checked = await anyprobe.check(urls, manager=manager, retries=1, ordered=True)
    async with anyprobe.stream(urls, manager=manager, retries=1) as results:
        streamed = {result.target: result async for result in results}
    assert [r.target for r in checked] == urls
    for result in checked:
        other = streamed[result.target]
        assert (result.status, result.summary, result.attempts) == (
            other.status,
            other.summary,
            other.attempts,
        )
    assert checked.summary.counts == results.summary.counts  # type: ignore[union-attr]
