"""The file rules of every file reporter, through the real ``anyprobe`` command.

A report path that is not a regular file (a device, a FIFO) is written
through and stays what it was; a symlink is followed and stays a symlink; a
new report gets the mode the umask gives and an existing one keeps its mode;
a path that cannot be written is refused before the first check runs, with
one line naming the path as the user gave it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from .conftest import anyprobe_command, clean_env

pytestmark = pytest.mark.slow

BACKENDS = ["asyncio", "trio"]
#: Every reporter that writes a file: -r NAME=PATH.
FILE_REPORTERS = ["jsonl", "csv", "junit", "prometheus", "nagios", "markdown", "table"]


def run_cli(
    *args: str, umask: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        anyprobe_command(*args),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def report_all(
    backend: str, paths: dict[str, Path | str], port: int, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """One ok check, reported by every file reporter, each to its path."""
    reports = [arg for name, path in paths.items() for arg in ("-r", f"{name}={path}")]
    return run_cli(
        "check", "--backend", backend, "--no-progress", *reports,
        f"tcp://127.0.0.1:{port}/file-rules", umask=umask,
    )  # fmt: skip


def assert_reported(text: str, port: int) -> None:
    """``text`` is a report of the check (each format names its port)."""
    assert str(port) in text, text


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_device_is_written_through_and_stays_a_device(backend: str, listening_port: int) -> None:
    before = os.stat("/dev/null")
    proc = report_all(backend, dict.fromkeys(FILE_REPORTERS, "/dev/null"), listening_port)
    assert proc.returncode == 0, proc.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev, stat.S_IMODE(after.st_mode)) == (
        before.st_ino, before.st_rdev, stat.S_IMODE(before.st_mode),
    )  # fmt: skip
    assert not [name for name in os.listdir("/dev") if name.startswith(".null.")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fifo_is_written_through_and_stays_a_fifo(
    tmp_path: Path, backend: str, listening_port: int
) -> None:
    fifos = {name: tmp_path / f"{name}.fifo" for name in FILE_REPORTERS}
    received: dict[str, bytes] = {}

    def read(name: str) -> None:
        with open(fifos[name], "rb") as f:  # waits for the writer
            received[name] = f.read()

    readers = []
    for name, fifo in fifos.items():
        os.mkfifo(fifo)
        readers.append(threading.Thread(target=read, args=(name,), daemon=True))
        readers[-1].start()
    proc = report_all(backend, dict(fifos), listening_port)
    for reader in readers:
        reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    for name, fifo in fifos.items():
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert_reported(received[name].decode(), listening_port)
    assert sorted(os.listdir(tmp_path)) == sorted(f.name for f in fifos.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_symlink_is_followed_and_stays_a_symlink(
    tmp_path: Path, backend: str, listening_port: int
) -> None:
    (tmp_path / "real").mkdir()
    links = {}
    for name in FILE_REPORTERS:
        target = tmp_path / "real" / f"{name}.out"
        target.write_text("an earlier report\n")
        target.chmod(0o640)
        links[name] = tmp_path / f"{name}.link"
        links[name].symlink_to(target)
    proc = report_all(backend, dict(links), listening_port)
    assert proc.returncode == 0, proc.stderr
    for name, link in links.items():
        target = tmp_path / "real" / f"{name}.out"
        assert link.is_symlink()
        assert os.readlink(link) == str(target)
        assert_reported(target.read_text(), listening_port)
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path / "real")) == sorted(f"{n}.out" for n in FILE_REPORTERS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_a_new_report_gets_the_mode_the_umask_gives(
    tmp_path: Path, backend: str, umask: int, mode: int, listening_port: int
) -> None:
    paths = {name: tmp_path / f"{name}.out" for name in FILE_REPORTERS}
    proc = report_all(backend, dict(paths), listening_port, umask=umask)
    assert proc.returncode == 0, proc.stderr
    for path in paths.values():
        assert (path.name, stat.S_IMODE(path.stat().st_mode)) == (path.name, mode)
        assert_reported(path.read_text(), listening_port)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_an_existing_report_keeps_its_mode(
    tmp_path: Path, backend: str, mode: int, listening_port: int
) -> None:
    paths = {name: tmp_path / f"{name}.out" for name in FILE_REPORTERS}
    for path in paths.values():
        path.write_text("an earlier report\n")
        path.chmod(mode)
    proc = report_all(backend, dict(paths), listening_port, umask=0o077)
    assert proc.returncode == 0, proc.stderr
    for path in paths.values():
        assert (path.name, stat.S_IMODE(path.stat().st_mode)) == (path.name, mode)
        text = path.read_text()
        assert_reported(text, listening_port)
        assert "an earlier report" not in text
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths.values())


# -- paths checked before the first check ---------------------------------------


@pytest.mark.parametrize(
    ("reporter", "where", "expected"),
    [
        *[
            (name, "missing/report.out", "directory {tmp}/missing does not exist")
            for name in FILE_REPORTERS
        ],
        ("junit", ".", "it is a directory"),
        ("jsonl", "file/report.out", "{tmp}/file is not a directory"),
    ],
)
def test_a_path_that_cannot_be_written_is_refused_before_any_check(
    tmp_path: Path, reporter: str, where: str, expected: str, blackhole_port: int
) -> None:
    (tmp_path / "file").write_text("a file, not a directory\n")
    path = str(tmp_path / where) if where != "." else str(tmp_path)
    # The check would hang for a minute: the subprocess limit shows it never ran.
    proc = run_cli(
        "check", "-t", "60", "-r", f"{reporter}={path}",
        f"tcp://127.0.0.1:{blackhole_port}", timeout=30,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"--report {reporter}={path}: cannot write {path}: " in lines[0]
    assert expected.format(tmp=tmp_path) in lines[0]
    assert ".tmp" not in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("reporter", ["jsonl", "junit"])
def test_an_empty_dest_is_a_usage_error(reporter: str) -> None:
    proc = run_cli("check", "-r", f"{reporter}=", "tcp://127.0.0.1:9")
    assert proc.returncode == 3
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"--report {reporter}=: DEST is empty" in lines[0]


def test_a_config_reporter_path_is_checked_before_any_check(
    tmp_path: Path, blackhole_port: int
) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(
        f'[[check]]\nurl = "tcp://127.0.0.1:{blackhole_port}"\ntimeout = 60\n\n'
        f'[[reporter]]\ntype = "junit"\npath = "{tmp_path}/missing/out.xml"\n'
    )
    proc = run_cli("run", str(config), timeout=30)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"reporter junit: cannot write {tmp_path}/missing/out.xml: directory" in lines[0]


# -- the terminal with only file reporters, -v, and -r options --------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_file_reporters_still_print_the_summary_line(
    tmp_path: Path, backend: str, listening_port: int, closed_port: int
) -> None:
    args = ["check", "--backend", backend, "-r", f"jsonl={tmp_path / 'r.jsonl'}",
            f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{closed_port}"]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("anyprobe: 2 checks: 1 ok, 1 critical in ")
    quiet = run_cli(*args, "-q")
    assert (quiet.returncode, quiet.stderr) == (2, "")
    # A reporter on the terminal prints the summary itself: no second one.
    with_table = run_cli(*args, "-r", "table")
    assert "1 ok, 1 critical" in with_table.stdout
    assert "1 ok, 1 critical" not in with_table.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_verbose_adds_a_line_per_check(backend: str, listening_port: int, closed_port: int) -> None:
    ok, refused = f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{closed_port}"
    quiet = run_cli("check", "--backend", backend, "-r", "jsonl", ok, refused)
    assert quiet.stderr.count("anyprobe: check ") == 0
    one = run_cli("check", "--backend", backend, "-v", "-r", "jsonl", ok, refused)
    lines = [line for line in one.stderr.splitlines() if line.startswith("anyprobe: check ")]
    assert len(lines) == 1, one.stderr
    assert lines[0].startswith(f"anyprobe: check {refused}: critical in ")
    assert "during connect" in lines[0]
    two = run_cli("check", "--backend", backend, "-vv", "-r", "jsonl", ok, refused)
    lines = [line for line in two.stderr.splitlines() if line.startswith("anyprobe: check ")]
    assert sorted(line.split(": ")[1] for line in lines) == sorted(
        f"check {url}" for url in (ok, refused)
    ), two.stderr
    assert all(", connect " in line for line in lines), lines


def test_reporter_options_on_the_command_line(tmp_path: Path, listening_port: int) -> None:
    out = tmp_path / "r.xml"
    proc = run_cli(
        "check", "-r", f"junit:path={out},suite_name=api,classname_prefix=ci.",
        f"tcp://127.0.0.1:{listening_port}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert '<testsuites name="api"' in text
    assert 'classname="ci.' in text
    # A VALUE keeps its ':' and its ',' unless a KEY= follows.
    table = run_cli("check", "-r", "table:sort=status", f"tcp://127.0.0.1:{listening_port}")
    assert table.returncode == 0, table.stderr


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("table:srot=status", ["--report table:srot", "unknown option", "did you mean 'sort'"]),
        ("table:sort=fastest", ["--report table:sort", "got 'fastest'"]),
        ("table:sort", ["--report table:...", "'sort' is not KEY=VALUE"]),
        ("junit:", ["--report junit:...", "'' is not KEY=VALUE"]),
        (":sort=status", ["expected NAME, NAME=DEST or NAME:KEY=VALUE"]),
        ("tabel:sort=status", ["unknown reporter 'tabel'", "did you mean 'table'"]),
    ],
)
def test_bad_reporter_options_are_one_clear_line(spec: str, fragments: list[str]) -> None:
    proc = run_cli("check", "-r", spec, "tcp://127.0.0.1:9")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fifo_nobody_reads_fails_the_reporter_after_its_timeout(
    tmp_path: Path, backend: str, listening_port: int
) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    # No reader ever opens the FIFO: the reporter waits, then is stopped, and
    # the process ends (no thread is left blocked in open() or write()).
    proc = run_cli(
        "check", "--backend", backend, "--no-progress", "--reporter-timeout", "1",
        "-r", f"junit={fifo}", f"tcp://127.0.0.1:{listening_port}", timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("anyprobe: 1 check: 1 ok in ")  # the summary line
    assert lines[1] == (
        "anyprobe: reporter junit did not finish within 1 s after the last result "
        "(reporter_timeout)"
    )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
