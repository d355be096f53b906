"""The CSV reporter, read back by the csv module."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from anyprobe.plugins.csv import COLUMNS, CsvOptions, CsvReporter

from .reporter_samples import make_result, run_reporter, sample_results


async def write_csv(tmp_path: Path, **options: str | bool) -> str:
    path = tmp_path / "results.csv"
    await run_reporter(CsvReporter(CsvOptions(path=str(path), **options)), sample_results())
    return path.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_a_header_then_one_row_per_result(tmp_path: Path) -> None:
    text = await write_csv(tmp_path)
    rows = list(csv.DictReader(io.StringIO(text)))

    assert tuple(rows[0]) == COLUMNS
    results = sample_results()
    assert [row["name"] for row in rows] == [r.name for r in results]
    assert [row["status"] for row in rows] == [r.status.value for r in results]
    # A summary with a quote, a pipe and a newline survives the round trip.
    assert rows[3]["summary"] == results[3].summary
    assert rows[3]["name"] == "odd 'name' | a=b <&>"


@pytest.mark.anyio
async def test_cells_hold_every_field(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(await write_csv(tmp_path))))

    api, cache = rows[0], rows[2]
    assert float(api["duration"]) == 0.041
    assert api["attempts"] == "1"
    assert api["started"] == "2026-11-24T10:00:00.123456+00:00"
    assert json.loads(api["phases"])["tls"] == 0.018
    assert json.loads(api["metrics"]) == {
        "http_status": 200,
        "cert_expiry_days": 61.5,
        "body_bytes": 512,
    }
    assert json.loads(api["labels"])["team"] == "payments"
    assert api["error_type"] == api["error_phase"] == api["error_message"] == ""
    assert (cache["error_type"], cache["error_phase"], cache["error_message"]) == (
        "ConnectionRefusedError",
        "connect",
        "[Errno 111] Connection refused",
    )


@pytest.mark.anyio
async def test_every_row_has_every_column(tmp_path: Path) -> None:
    rows = list(csv.reader(io.StringIO(await write_csv(tmp_path))))
    assert len(rows) == 6
    assert {len(row) for row in rows} == {len(COLUMNS)}


@pytest.mark.anyio
async def test_delimiter_and_no_header(tmp_path: Path) -> None:
    text = await write_csv(tmp_path, delimiter=";", header=False)
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert len(rows) == 5
    assert rows[0][:4] == ["api", "https://api.example.test/health", "http", "ok"]


@pytest.mark.anyio
async def test_an_empty_run_is_the_header_alone(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    await run_reporter(CsvReporter(CsvOptions(path=str(path))), [])
    assert path.read_text() == ",".join(COLUMNS) + "\n"


@pytest.mark.anyio
async def test_rows_are_written_as_results_arrive(tmp_path: Path) -> None:
    import anyio

    from anyprobe import ReportContext, Result, ResultStream

    path = tmp_path / "results.csv"
    reporter = CsvReporter(CsvOptions(path=str(path)))
    send, receive = anyio.create_memory_object_stream[Result](10)

    async def consume() -> None:
        async with receive:
            await reporter.report(ResultStream(receive), ReportContext(total=2))

    async with anyio.create_task_group() as tg, send:
        tg.start_soon(consume)
        await send.send(make_result("first"))
        # The run is not over, yet the row is in the file.
        with anyio.fail_after(10):
            # Polled: the file is written from a worker thread, not by a task.
            while not path.exists() or path.read_text().count("\n") < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    (row,) = csv.DictReader(io.StringIO(path.read_text()))
    assert row["name"] == "first"
