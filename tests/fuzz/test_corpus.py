"""Every case of the bad-input corpus, through the real CLI in a subprocess.

The cases run in parallel (a bounded pool of threads, each waiting on one
``python -m anyprobe`` process) once per session, then each case's test
asserts on its outcome: bad input is exit 3 with exactly one line on stderr,
nothing on stdout, no traceback, no hang, and no connection made; accepted
input runs and leaves report files as the corpus says.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fuzz.corpus import CASES, Case
from tests.fuzz.runner import HARD_LIMIT, Outcome, run_case

pytestmark = pytest.mark.slow

#: Processes at once: each case is mostly interpreter start-up, so two per core.
WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
BY_ID = {case.id: case for case in CASES}


def test_case_ids_are_unique() -> None:
    assert len(BY_ID) == len(CASES)


@pytest.fixture(scope="session")
def outcomes(request: pytest.FixtureRequest) -> Iterator[dict[str, Outcome]]:
    """Run every selected case once, in parallel, and keep the outcomes by id."""
    wanted = [
        BY_ID[item.callspec.params["case"].id]
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    ]
    with tempfile.TemporaryDirectory(prefix="anyprobe-fuzz-") as root:

        def run(case: Case) -> Outcome:
            tmp = Path(root) / case.id
            tmp.mkdir()
            return run_case(case, tmp)

        with ThreadPoolExecutor(WORKERS) as pool:
            # The slowest cases (a huge file, a deep nesting) first.
            yield {o.case.id: o for o in pool.map(run, wanted)}


def one_clear_line(outcome: Outcome) -> str:
    assert outcome.returncode == 3, outcome.where()
    assert outcome.stdout == "", outcome.where()
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), outcome.where()
    assert not RAW_CONTROL.search(lines[0]), f"raw control character: {outcome.where()}"
    for fragment in outcome.case.says:
        choices = [outcome.fill(choice) for choice in fragment.split("|")]
        assert any(choice in lines[0] for choice in choices), (fragment, outcome.where())
    return lines[0]


def holds(condition: str, outcome: Outcome) -> None:
    kind, _, rest = condition.partition(":")
    path = outcome.tmp / rest.partition("=")[0]
    if kind == "stdout-escaped":
        assert not RAW_CONTROL.search(outcome.stdout.replace("\t", " ")), outcome.where()
    elif kind == "symlink":
        assert path.is_symlink(), f"{path} is no longer a symbolic link: {outcome.where()}"
    elif kind == "fifo":
        assert stat.S_ISFIFO(path.lstat().st_mode), f"{path} is no longer a FIFO"
        assert b"<" in outcome.written[path.name], (outcome.written, outcome.where())
    elif kind == "chardev":
        assert stat.S_ISCHR(path.lstat().st_mode), f"{path} is no longer a device"
    elif kind == "mode":
        mode = stat.S_IMODE(path.stat().st_mode)
        assert f"{mode:o}" == rest.partition("=")[2], (f"{mode:o}", outcome.where())
    elif kind == "changed":
        spec = outcome.case.files[path.name]
        old = spec["content"] if isinstance(spec, dict) else spec
        assert path.read_text() != old, f"{path} was not written: {outcome.where()}"
    else:  # pragma: no cover - a typo in the corpus
        raise AssertionError(f"unknown condition {condition!r}")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case, outcomes: dict[str, Outcome]) -> None:
    if any(isinstance(s, dict) and "device" in s for s in case.files.values()) and os.getuid():
        pytest.skip("making a device node needs root")
    outcome = outcomes[case.id]
    assert not outcome.hung, f"no verdict within {HARD_LIMIT:.0f} s: {outcome.where()}"
    assert "Traceback" not in outcome.stderr, outcome.where()
    if case.expect == "refused":
        assert outcome.served, f"serve did not start: {outcome.where()}"
        assert outcome.http_status == case.status, (outcome.http_body, outcome.where())
        assert outcome.connections == 0, f"connected to the loopback sentinel: {outcome.where()}"
        return
    assert not outcome.served, f"serve started instead of refusing: {outcome.where()}"
    if case.expect == "bad" or (case.expect == "ok_or_bad" and outcome.returncode != 0):
        one_clear_line(outcome)
        assert outcome.connections == 0, f"a check ran before the error: {outcome.where()}"
    else:
        assert outcome.returncode == 0, outcome.where()
        for condition in case.then:
            holds(condition, outcome)
