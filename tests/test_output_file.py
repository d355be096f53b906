"""OutputFile, in process on both backends: an unfinished report never replaces a
file, errors name the report's path, nothing is created before the first write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest

import anyprobe
from anyprobe._reporter import output_problem

pytestmark = pytest.mark.anyio

GOOD = "an earlier, good report\n"


@pytest.mark.parametrize("atomic", [True, False])
async def test_a_report_that_raises_leaves_the_existing_file(tmp_path: Path, atomic: bool) -> None:
    path = tmp_path / "report.out"
    path.write_text(GOOD)
    with pytest.raises(ZeroDivisionError):
        async with await anyprobe.OutputFile.open(str(path), atomic=atomic) as out:
            if atomic:
                await out.write("half of a report")
            raise ZeroDivisionError
    assert path.read_text() == GOOD
    assert os.listdir(tmp_path) == ["report.out"]


@pytest.mark.parametrize("atomic", [True, False])
async def test_a_cancelled_report_leaves_the_existing_file(tmp_path: Path, atomic: bool) -> None:
    path = tmp_path / "report.out"
    path.write_text(GOOD)
    with anyio.CancelScope() as scope:
        async with await anyprobe.OutputFile.open(str(path), atomic=atomic) as out:
            if atomic:
                await out.write("half of a report")
            scope.cancel()
            await anyio.sleep_forever()
    assert path.read_text() == GOOD
    assert os.listdir(tmp_path) == ["report.out"]


async def test_a_report_with_nothing_written_is_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "report.out"
    path.write_text(GOOD)
    async with await anyprobe.OutputFile.open(str(path)):
        pass
    assert path.read_text() == ""


async def test_errors_name_the_report_not_a_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "report.out"
    with pytest.raises(OSError, match=f"^cannot write {path}: No such file or directory$"):
        await anyprobe.OutputFile.open(str(path), atomic=True)
    with pytest.raises(OSError, match=f"^cannot write {path}: No such file or directory$"):
        async with await anyprobe.OutputFile.open(str(path)) as out:
            await out.write("text")


async def test_a_dangling_symlink_is_followed(tmp_path: Path) -> None:
    link = tmp_path / "report.link"
    link.symlink_to(tmp_path / "target.out")
    async with await anyprobe.OutputFile.open(str(link), atomic=True) as out:
        await out.write("report\n")
    assert link.is_symlink()
    assert (tmp_path / "target.out").read_text() == "report\n"
    assert stat.S_IMODE((tmp_path / "target.out").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_problems_are_found_without_creating_anything(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert output_problem(str(tmp_path / "new.out")) is None
    assert output_problem("/dev/null") is None
    assert output_problem("") == "the path is empty"
    assert output_problem(str(tmp_path)) == f"cannot write {tmp_path}: it is a directory"
    assert output_problem(str(tmp_path / "no" / "x")) == (
        f"cannot write {tmp_path}/no/x: directory {tmp_path}/no does not exist"
    )
    assert output_problem(str(tmp_path / "file" / "x")) == (
        f"cannot write {tmp_path}/file/x: {tmp_path}/file is not a directory"
    )
    assert sorted(os.listdir(tmp_path)) == ["file"]
