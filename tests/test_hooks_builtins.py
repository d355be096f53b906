"""anyprobe's own plugins load from a list in core, not from package metadata.

A copy of the source tree with no ``.dist-info`` (vendored into another
project, or a zipapp) must still have every built-in probe and reporter.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import zipapp
from pathlib import Path

import pytest

from anyprobe import PluginManager
from anyprobe._manager import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parent.parent

# Run in isolated mode (-I: no PYTHONPATH, no user site) without the site module
# (-S: no .pth file, so no editable install of anyprobe), with the path set here.
LAUNCHER = """
import importlib.metadata, sys
sys.path[:0] = sys.argv[1:3]
try:
    importlib.metadata.distribution("anyprobe")
except importlib.metadata.PackageNotFoundError:
    pass
else:
    sys.exit("anyprobe's package metadata is visible: the test proves nothing")
import anyprobe
assert anyprobe.__file__.startswith(sys.argv[1]), anyprobe.__file__
from anyprobe._cli import main
main(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """anyprobe's dependencies, as links to what is installed, without anyprobe itself."""
    farm = tmp_path_factory.mktemp("dependencies")
    sources = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    for source in dict.fromkeys(Path(s) for s in sources):
        if not source.is_dir():
            continue
        for entry in sorted(source.iterdir()):
            name = entry.name.lower()
            if name.startswith(("anyprobe", "__editable__")) or name.endswith(".pth"):
                continue
            if not (farm / entry.name).exists():
                (farm / entry.name).symlink_to(entry)
    return farm


@pytest.fixture(scope="module")
def zipped_anyprobe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source tree laid out as the ``anyprobe`` package (core/ -> anyprobe,
    plugins/ -> anyprobe.plugins, as pyproject.toml maps them), in a zipapp."""
    tree = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "core", tree / "anyprobe", ignore=ignore)
    shutil.copytree(ROOT / "plugins", tree / "anyprobe" / "plugins", ignore=ignore)
    target = tree.parent / "anyprobe.pyz"
    zipapp.create_archive(tree, target, main="anyprobe._cli:main")
    return target


def run_copy(zipped: Path, dependencies: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, str(zipped), str(dependencies), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_the_builtin_list_names_every_plugin_in_the_source_tree() -> None:
    modules = {
        f"anyprobe.plugins.{path.stem}"
        for path in (ROOT / "plugins").glob("*.py")
        if not path.name.startswith("_")
    }
    assert set(BUILTIN_PLUGINS) == modules


def test_builtin_plugins_load_once_although_their_entry_points_name_them_too() -> None:
    manager = PluginManager()
    manager.load_entrypoints()
    names = [info.name for info in manager.plugins]
    assert len(names) == len(set(names))
    builtin = [info for info in manager.plugins if info.module in BUILTIN_PLUGINS]
    assert len(builtin) == len(BUILTIN_PLUGINS)
    assert all(info.package == "anyprobe" and not info.broken for info in builtin)


def test_a_copy_without_package_metadata_lists_the_builtin_plugins(
    zipped_anyprobe: Path, dependencies: Path
) -> None:
    proc = run_copy(zipped_anyprobe, dependencies, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {entry["name"]: entry for entry in json.loads(proc.stdout)}
    assert set(plugins) == {module.rpartition(".")[2] for module in BUILTIN_PLUGINS}
    assert all(entry["status"] == "ok" for entry in plugins.values())
    schemes = {s for entry in plugins.values() for p in entry["probes"] for s in p["schemes"]}
    assert {"http", "https", "tcp", "tls", "dns", "ssh"} <= schemes


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_copy_without_package_metadata_runs_a_check(
    zipped_anyprobe: Path, dependencies: Path, listening_port: int, backend: str
) -> None:
    target = f"tcp://127.0.0.1:{listening_port}"
    proc = run_copy(
        zipped_anyprobe, dependencies, "check", "--backend", backend, "-r", "jsonl", target
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["target"], result["probe"], result["status"]) == (target, "tcp", "ok")
