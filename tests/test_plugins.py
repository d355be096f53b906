"""Plugin discovery through entry points, and plugins that are broken."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import anyprobe
from anyprobe import PluginError, PluginManager
from tests import probes
from tests.cli import anyprobe as run_anyprobe


def make_distribution(
    site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """A minimal installed distribution on ``site``: metadata, entry points, modules."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[anyprobe]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


ECHO_PLUGIN = """
    from urllib.parse import SplitResult
    import anyprobe

    class EchoProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
        name = "echo"
        schemes = ("echo",)

        def validate_url(self, url: SplitResult, text: str):
            return url.hostname or "", None

        async def check(self, target, options, ctx):
            return anyprobe.Outcome.ok(f"echo {target.host}")

    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        register(EchoProbe)
"""

RAISING_PLUGIN = """
    import anyprobe

    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        raise RuntimeError("no licence key")
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(
        site, "anyprobe_echo", {"echo": "anyprobe_echo"}, {"anyprobe_echo": ECHO_PLUGIN}
    )
    make_distribution(site, "anyprobe_missing", {"missing": "anyprobe_not_there"}, {})
    make_distribution(
        site,
        "anyprobe_raising",
        {"raising": "anyprobe_raising"},
        {"anyprobe_raising": RAISING_PLUGIN},
    )
    return site


def test_third_party_probe_is_found_through_its_entry_point(
    site: Path, listening_port: int
) -> None:
    proc = run_anyprobe("check", "-r", "jsonl", "echo://hello", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"] == "echo hello"


def test_broken_plugins_are_named_and_the_others_still_work(
    site: Path, listening_port: int
) -> None:
    proc = run_anyprobe(
        "check",
        "-r",
        "jsonl",
        f"tcp://127.0.0.1:{listening_port}",
        "echo://x",
        env={"PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2
    assert any("plugin missing is broken: failed to load anyprobe_not_there" in w for w in warnings)
    assert any(
        "plugin raising is broken: anyprobe_register_probes raised RuntimeError: no licence key"
        in w
        for w in warnings
    )


def test_plugins_command_shows_broken_plugins(site: Path) -> None:
    proc = run_anyprobe("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["missing"]["status"] == "broken"
    assert plugins["raising"]["status"] == "broken"
    assert plugins["echo"]["status"] == "ok" and plugins["echo"]["package"] == "anyprobe_echo"
    assert plugins["echo"]["probes"][0]["schemes"] == ["echo"]
    text = run_anyprobe("plugins", env={"PYTHONPATH": str(site)}).stdout
    assert "missing (anyprobe_missing 1.0)  BROKEN: failed to load anyprobe_not_there" in text


def test_autoload_can_be_switched_off(site: Path) -> None:
    env = {"PYTHONPATH": str(site)}
    proc = run_anyprobe("--no-plugin-autoload", "check", "echo://x", env=env)
    assert "unknown scheme 'echo'" in proc.stderr and proc.returncode == 3
    proc = run_anyprobe("check", "echo://x", env={**env, "ANYPROBE_LOAD_PLUGINS": ""})
    assert "unknown scheme 'echo'" in proc.stderr and "broken" not in proc.stderr
    proc = run_anyprobe(
        "check", "-r", "jsonl", "echo://x", env={**env, "ANYPROBE_LOAD_PLUGINS": "echo"}
    )
    assert proc.returncode == 0 and "broken" not in proc.stderr


def test_programmatic_registration_and_scheme_conflict(manager: PluginManager) -> None:
    manager.register(probes)
    assert manager.probe_for_scheme("test") is not None

    class Clash:
        @anyprobe.hookimpl
        def anyprobe_register_probes(self, register: object) -> None:
            register(type("Other", (probes.ScriptedProbe,), {"name": "other"}))  # type: ignore[operator]

    manager.register(Clash(), name="clash")
    broken = {info.name: info.error for info in manager.broken}
    assert "scheme 'test' is already handled by probe 'scripted'" in str(broken["clash"])
    assert manager.probes["scripted"]
    with pytest.raises(PluginError):
        manager.register(probes)


def test_registering_something_that_is_not_a_probe_breaks_only_that_plugin(
    manager: PluginManager,
) -> None:
    class NotAProbe:
        @anyprobe.hookimpl
        def anyprobe_register_probes(self, register: object) -> None:
            register(int)  # type: ignore[operator]

    manager.register(NotAProbe(), name="wrong")
    assert "is not a subclass of anyprobe.Probe" in str(manager.broken[0].error)
    assert "tcp" in manager.probes


def test_lifecycle_hooks_are_called_and_a_raising_one_is_isolated(manager: PluginManager) -> None:
    calls: list[str] = []

    class Lifecycle:
        @anyprobe.hookimpl
        def anyprobe_run_started(self, run: anyprobe.RunInfo) -> None:
            calls.append(f"started {run.total}")

        @anyprobe.hookimpl
        def anyprobe_run_finished(
            self, run: anyprobe.RunInfo, summary: anyprobe.RunSummary
        ) -> None:
            calls.append(f"finished {summary.finished}")

    class Raising:
        @anyprobe.hookimpl
        def anyprobe_run_started(self, run: anyprobe.RunInfo) -> None:
            raise RuntimeError("boom")

    manager.register(probes)
    manager.register(Lifecycle(), name="lifecycle")
    manager.register(Raising(), name="raising")
    results = anyprobe.check_sync(["test://ok", "test://ok-2"], manager=manager)
    assert len(results) == 2
    assert calls == ["started 2", "finished 2"]
    assert "anyprobe_run_started raised RuntimeError: boom" in str(manager.broken[0].error)
