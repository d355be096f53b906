"""The command line as users and scripts see it: tables, records, exit statuses, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import anyprobe, assert_one_clear_line

CONTRACT_KEYS = [
    "name", "target", "probe", "status", "summary", "started", "duration",
    "attempts", "phases", "metrics", "error", "labels",
]  # fmt: skip


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_check_open_and_closed_port_prints_table_and_exits_2(
    backend: str, listening_port: int, closed_port: int
) -> None:
    proc = anyprobe(
        "check", "--backend", backend, f"tcp://127.0.0.1:{listening_port}",
        f"tcp://127.0.0.1:{closed_port}",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "NAME", "LATENCY", "SUMMARY"]
    rows = {line.split()[1]: line.split()[0] for line in lines[1:3]}
    assert rows == {
        f"tcp://127.0.0.1:{listening_port}": "OK",
        f"tcp://127.0.0.1:{closed_port}": "CRITICAL",
    }
    assert "connection refused" in proc.stdout
    assert lines[3].startswith("2 checks: 1 ok, 1 critical in ")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_jsonl_records_have_exactly_the_contract_keys(
    backend: str, listening_port: int, closed_port: int
) -> None:
    proc = anyprobe(
        "check", "--backend", backend, "-r", "jsonl", f"tcp://127.0.0.1:{listening_port}",
        f"tcp://127.0.0.1:{closed_port}",
    )  # fmt: skip
    assert proc.returncode == 2
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert list(record) == CONTRACT_KEYS
        assert record["probe"] == "tcp" and record["attempts"] == 1
        assert set(record["phases"]) == {"resolve", "connect"}
    bad = next(r for r in records if r["status"] == "critical")
    assert bad["error"]["phase"] == "connect"
    assert bad["error"]["type"] == "ConnectionRefusedError"
    assert bad["started"].endswith("+00:00")


def test_all_ok_exits_0_and_jsonl_to_a_file(tmp_path: Path, listening_port: int) -> None:
    out = tmp_path / "r.jsonl"
    proc = anyprobe(
        "check", "-r", f"jsonl={out}", "-r", "table", f"tcp://127.0.0.1:{listening_port}"
    )
    assert proc.returncode == 0
    assert json.loads(out.read_text())["status"] == "ok"
    assert "OK" in proc.stdout


def test_slow_connect_is_a_warning_exit_1(listening_port: int) -> None:
    proc = anyprobe("check", "--set", "warning_after=0.000001", f"tcp://127.0.0.1:{listening_port}")
    assert proc.returncode == 1, proc.stdout
    assert "WARNING" in proc.stdout and "over warning_after" in proc.stdout


def test_targets_from_file_and_stdin(tmp_path: Path, listening_port: int) -> None:
    listfile = tmp_path / "targets.txt"
    listfile.write_text(f"# comment\n\ntcp://127.0.0.1:{listening_port}\n")
    proc = anyprobe("check", "-r", "jsonl", "-i", str(listfile))
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
    proc = anyprobe("check", "-r", "jsonl", "-i", "-", input=f"tcp://127.0.0.1:{listening_port}\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1


def test_bad_line_in_target_file_names_file_and_line(tmp_path: Path) -> None:
    listfile = tmp_path / "targets.txt"
    listfile.write_text("tcp://127.0.0.1:1\n\nnope://x\n")
    assert_one_clear_line(anyprobe("check", "-i", str(listfile)), f"{listfile}:3: nope://x")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["check", "nope://x"], ["nope://x: unknown scheme 'nope'"]),
        (["check", "tcp://host-without-port"], ["tcp://host-without-port: no port"]),
        (["check", "--set", "warning_after=abc", "tcp://h:1"], ["--set", "field 'warning_after'"]),
        (["check", "--set", "warnig_after=1", "tcp://h:1"], ["did you mean 'warning_after'?"]),
        (["check", "-r", "jsnol", "tcp://h:1"], ["--report jsnol", "did you mean 'jsonl'?"]),
        (["check", "--concurrency", "0", "tcp://h:1"], ["--concurrency"]),
        (["check", "--bogus", "tcp://h:1"], ["--bogus"]),
        (["check"], ["no targets"]),
        (["check", "-i", "/nonexistent/list"], ["/nonexistent/list"]),
        (["run", "/nonexistent.toml"], ["/nonexistent.toml: cannot read config"]),
        (["nosuchcommand"], ["nosuchcommand"]),
        (["check", "--backend", "curio", "tcp://h:1"], ["--backend"]),
    ],
)
def test_bad_usage_is_one_clear_line_and_exit_3(args: list[str], fragments: list[str]) -> None:
    assert_one_clear_line(anyprobe(*args), *fragments)


def test_config_with_unknown_key_is_one_line_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "checks.toml"
    config.write_text('[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:1"\ncritcal_after = 1\n')
    assert_one_clear_line(
        anyprobe("run", str(config)),
        f"{config}:4: check 'db': field 'critcal_after'",
        "did you mean 'critical_after'?",
    )


def test_run_config_with_reporter_and_labels(
    tmp_path: Path, listening_port: int, closed_port: int
) -> None:
    out = tmp_path / "out.jsonl"
    config = tmp_path / "checks.toml"
    config.write_text(
        f"""
[defaults]
timeout = 2
labels = {{ env = "test" }}

[[check]]
name = "web"
url = "tcp://127.0.0.1:{listening_port}"

[[check]]
name = "down"
url = "tcp://127.0.0.1:{closed_port}"
labels = {{ team = "db" }}

[[reporter]]
type = "jsonl"
path = "{out}"
"""
    )
    proc = anyprobe("run", "--backend", "trio", str(config))
    assert proc.returncode == 2, proc.stderr
    records = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["web"]["status"] == "ok"
    assert records["down"]["labels"] == {"env": "test", "team": "db"}
    assert proc.stdout == "", "a configured reporter replaces the default table"


def test_explain_prints_the_trace_under_the_row(listening_port: int) -> None:
    proc = anyprobe(
        "check", "--explain", f"tcp://localhost:{listening_port}", "--set", "ip_family=ipv4"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resolved localhost to 127.0.0.1" in proc.stdout
    assert f"connected to 127.0.0.1 port {listening_port}" in proc.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_command(
    where: str, listening_port: int, closed_port: int
) -> None:
    targets = [f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{closed_port}"]
    args = ["-q", "check", *targets] if where == "before" else ["check", "-q", *targets]
    proc = anyprobe(*args)
    assert proc.returncode == 2
    assert "OK" not in proc.stdout and "CRITICAL" in proc.stdout and "checks:" not in proc.stdout


def test_quiet_shows_only_problems(listening_port: int, closed_port: int) -> None:
    proc = anyprobe(
        "-q", "check", f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{closed_port}"
    )
    assert proc.returncode == 2
    assert "OK" not in proc.stdout and "CRITICAL" in proc.stdout and "checks:" not in proc.stdout


def test_demo_shows_ok_and_critical_rows_and_exits_0() -> None:
    proc = anyprobe("demo", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout and "CRITICAL" in proc.stdout
    assert "got the verdict they should" in proc.stderr


def test_plugins_lists_builtin_probes_and_reporters_as_json() -> None:
    proc = anyprobe("plugins", "--json")
    assert proc.returncode == 0
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    tcp = plugins["tcp"]["probes"][0]
    assert tcp["schemes"][0] == "tcp" and plugins["tcp"]["package"] == "anyprobe"
    options = {o["name"]: o for o in tcp["options"]}
    assert options["warning_after"]["default"] is None
    assert "jsonl" in plugins["jsonl"]["reporters"][0]["name"]


def test_schema_covers_checks_and_reporters() -> None:
    proc = anyprobe("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    variants = schema["properties"]["check"]["items"]["anyOf"]
    tcp = next(v for v in variants if v["title"] == "check with probe tcp")
    assert {"url", "name", "timeout", "warning_after", "ip_family"} <= set(tcp["properties"])


def test_version_and_help() -> None:
    assert anyprobe("--version").stdout.startswith("anyprobe, version")
    proc = anyprobe("check", "--help")
    assert proc.returncode == 0 and "--concurrency" in proc.stdout


def test_jsonl_page_documents_exactly_the_record_keys() -> None:
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs/reporters/jsonl.md").read_text()
    record = page.split("## The record", 1)[1].split("## Options", 1)[0]
    always, optional = record.split("Four keys appear only when they hold something", 1)
    assert re.findall(r"^\| `(\w+)` \|", always, flags=re.M) == CONTRACT_KEYS
    assert set(re.findall(r"^\| `(\w+)` \|", optional, flags=re.M)) == {
        "thresholds",
        "details",
        "trace",
        "attempt_log",
    }
