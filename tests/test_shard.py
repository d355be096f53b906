"""``--shard I/N``: Prometheus' hashmod of the target URL, the same in every process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anyprobe import UsageError
from anyprobe._model import Target
from anyprobe._shard import INDEX_VARIABLES, Shard, hashmod, parse_shard

#: Longest one anyprobe process of these tests may run.
PROCESS_LIMIT = 120


def reference_hashmod(key: str, modulus: int) -> int:
    """Prometheus' relabel hashmod, written out independently of anyprobe._shard."""
    return int.from_bytes(hashlib.md5(key.encode()).digest()[8:], "big") % modulus


def test_hashmod_is_prometheus_hashmod() -> None:
    keys = [f"https://host-{i}.example/health?x={i}" for i in range(500)] + ["", "é/ü"]
    for key in keys:
        for modulus in (1, 2, 3, 4, 7, 64):
            assert hashmod(key, modulus) == reference_hashmod(key, modulus)
    # Every shard of 4 gets some of 500 keys.
    assert {hashmod(key, 4) for key in keys} == {0, 1, 2, 3}


def test_parse_shard_explicit_and_auto() -> None:
    shard = parse_shard("2/4", environ={"ANYPROBE_RUN_ID": "nightly-7"})
    assert (shard.index, shard.count, shard.run_id) == (2, 4, "nightly-7")
    assert str(shard) == "2/4"
    assert parse_shard("auto/3", environ={"JOB_COMPLETION_INDEX": "1"}).index == 1
    assert parse_shard("auto/3", environ={"NOMAD_ALLOC_INDEX": "2"}).index == 2
    assert parse_shard("auto/3", environ={"ANYPROBE_SHARD_INDEX": "0"}).index == 0
    # Kubernetes' own variable wins over the others.
    both = {"JOB_COMPLETION_INDEX": "1", "ANYPROBE_SHARD_INDEX": "2"}
    assert parse_shard("AUTO/3", environ=both).index == 1
    # Without ANYPROBE_RUN_ID each process makes one up.
    assert parse_shard("0/1", environ={}).run_id != parse_shard("0/1", environ={}).run_id


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("2", {}, "expected I/N or auto/N"),
        ("1/x", {}, "N must be a whole number"),
        ("0/0", {}, "N must be at least 1"),
        ("4/4", {}, "from 0 to 3"),
        ("-1/4", {}, "from 0 to 3"),
        ("a/4", {}, "must be a whole number"),
        ("auto/4", {}, "none of JOB_COMPLETION_INDEX, NOMAD_ALLOC_INDEX, ANYPROBE_SHARD_INDEX"),
        ("auto/4", {"JOB_COMPLETION_INDEX": "7"}, "JOB_COMPLETION_INDEX 7"),
        ("auto/4", {"NOMAD_ALLOC_INDEX": "x"}, "NOMAD_ALLOC_INDEX 'x'"),
    ],
)
def test_bad_shard_is_one_clear_error(text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_shard(text, environ=environ)


def test_select_keeps_the_shard_s_targets_and_labels_them() -> None:
    targets = [
        Target(f"t{i}", f"tcp://127.0.0.1:{i}", f"tcp://127.0.0.1:{i}", "tcp", "127.0.0.1", i, None)
        for i in range(1, 101)
    ]
    shards = [Shard(i, 3, "r1").select(targets) for i in range(3)]
    names = [{t.name for t in shard} for shard in shards]
    assert set.union(*names) == {t.name for t in targets}
    assert sum(len(n) for n in names) == len(targets)
    for index, shard in enumerate(shards):
        for target in shard:
            assert target.labels == {"shard": str(index), "run_id": "r1"}
            assert reference_hashmod(target.url, 3) == index


def _run(args: list[str], *, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "anyprobe", "-q", *args],
        env={**{k: v for k, v in os.environ.items() if k not in INDEX_VARIABLES}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _targets(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_four_shard_processes_split_the_run_exactly(tmp_path: Path) -> None:
    # Refused at once on loopback: a quick result for every target.
    urls = [f"tcp://127.0.0.1:{port}" for port in range(1, 41)]
    urls += [f"http://127.0.0.1:9/path/{i}?q={i}" for i in range(40)]
    targets_file = tmp_path / "targets.txt"
    targets_file.write_text("\n".join(urls) + "\n")
    common = ["check", "-i", str(targets_file), "--no-progress", "-t", "2"]
    env = {"ANYPROBE_RUN_ID": "test-run", "ANYPROBE_LOAD_PLUGINS": ""}
    processes = {"all": _run([*common, "-r", f"jsonl={tmp_path / 'all.jsonl'}"], env=env)}
    for index in range(4):
        processes[str(index)] = _run(
            [*common, "--shard", f"{index}/4", "-r", f"jsonl={tmp_path / f'{index}.jsonl'}"],
            # A different hash seed in every process: the split must not depend on it.
            env={**env, "PYTHONHASHSEED": str(index + 1)},
        )
    for name, process in processes.items():
        _, err = process.communicate(timeout=PROCESS_LIMIT)
        assert process.returncode in (0, 2), (name, err.decode())

    everything = {r["target"] for r in _targets(tmp_path / "all.jsonl")}
    assert everything == set(urls)
    shards = []
    for index in range(4):
        results = _targets(tmp_path / f"{index}.jsonl")
        for result in results:
            assert result["labels"] == {"shard": str(index), "run_id": "test-run"}
            assert reference_hashmod(str(result["target"]), 4) == index
        shards.append({r["target"] for r in results})
    for i in range(4):
        for j in range(i + 1, 4):
            assert not shards[i] & shards[j]
    assert set.union(*shards) == everything
    assert all(shards)


@pytest.mark.slow
def test_run_with_shard_auto_reads_the_job_index(tmp_path: Path) -> None:
    urls = [f"tcp://127.0.0.1:{port}" for port in range(1, 21)]
    config = tmp_path / "checks.toml"
    config.write_text("".join(f'[[check]]\nurl = "{url}"\n\n' for url in urls))
    out = tmp_path / "out.jsonl"
    process = _run(
        ["run", str(config), "--shard", "auto/2", "-r", f"jsonl={out}", "--no-progress"],
        env={"JOB_COMPLETION_INDEX": "1", "ANYPROBE_LOAD_PLUGINS": ""},
    )
    _, err = process.communicate(timeout=PROCESS_LIMIT)
    assert process.returncode == 2, err.decode()
    got = {r["target"] for r in _targets(out)}
    assert got == {url for url in urls if reference_hashmod(url, 2) == 1}
    run_ids = {r["labels"]["run_id"] for r in _targets(out)}  # type: ignore[index]
    assert len(run_ids) == 1


def test_bad_shard_on_the_command_line_exits_3() -> None:
    process = _run(["check", "tcp://127.0.0.1:1", "--shard", "auto/4"], env={})
    _, err = process.communicate(timeout=PROCESS_LIMIT)
    assert process.returncode == 3
    assert b"--shard 'auto/4': none of JOB_COMPLETION_INDEX" in err
