"""The documentation's examples run, and its reference sections match the code.

A fenced block in a guide page is preceded by a marker comment:

- ``<!-- run -->``: run it. Python runs as a script; in a console block every
  ``$ `` line runs in a shell (``<!-- run: exit=2 -->`` expects that status).
- ``<!-- run: file=NAME -->``: write it to NAME for the blocks after it.
- ``<!-- not run: why -->``: shown only, with the reason.
- ``needs=MODULE`` (with run): the page's examples need MODULE installed
  (the example plugin package, which CI installs before the tests).

The blocks of one page run in order in a directory of their own, against
loopback servers this module starts: ``localhost:8000`` is an HTTP server
(``/health`` answers ``UP``), ``localhost:5432`` a TCP server and
``localhost:11211`` a memcached look-alike for the example plugin.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import click
import pytest

from anyprobe import PluginManager, hookspecs
from anyprobe.cli import cli
from anyprobe.manager import describe_options
from anyprobe.testing import CLOSE, HttpReply, HttpServer, LineServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: The guide pages whose every example must run (or say why not).
GUIDE = [
    "index.md",
    "getting-started.md",
    "cli.md",
    "config.md",
    "embedding.md",
    "writing-a-probe.md",
    "writing-a-reporter.md",
    "hooks.md",
    "migration.md",
    "benchmarks.md",
]
CODE_LANGUAGES = {"python", "console", "toml", "sh", "bash", "shell"}
MARKER = re.compile(r"<!-- (run|not run)(?::\s*(.*?))? -->")


def load_hooks_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_hooks = load_hooks_module()


@dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    marker: str | None  # "run", "not run" or None
    argument: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.language})"


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``page``, each with the marker comment right above it."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^(`{3,})(\w*)", lines[index])
        if not fence:
            index += 1
            continue
        start, ticks = index, fence.group(1)
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].startswith(ticks)), len(lines)
        )
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.fullmatch(previous.strip())
        found.append(
            Block(
                page,
                start + 1,
                fence.group(2),
                "\n".join(lines[start + 1 : end]) + "\n",
                marker.group(1) if marker else None,
                (marker.group(2) or "") if marker else "",
            )
        )
        index = end + 1
    return found


def test_every_guide_page_exists_and_is_in_the_navigation() -> None:
    nav = repr(docs_hooks.build_nav(DOCS))
    for page in GUIDE:
        assert (DOCS / page).exists(), page
        assert f"'{page}'" in nav, page


def test_every_example_in_the_guide_is_run_or_says_why_not() -> None:
    unmarked = [
        str(b)
        for page in GUIDE
        for b in blocks(page)
        if b.language in CODE_LANGUAGES and b.marker is None
    ]
    assert not unmarked, (
        f"examples with no <!-- run --> or <!-- not run: why --> marker: {unmarked}"
    )
    for page in GUIDE:
        for block in blocks(page):
            if block.marker == "not run":
                assert len(block.argument) > 10, f"{block}: say why it is not run"


RUNNABLE = [
    page
    for page in GUIDE
    if (DOCS / page).exists() and any(b.marker == "run" for b in blocks(page))
]


@pytest.fixture
def loopback(
    anyprobe_http_server: Callable[..., HttpServer],
    anyprobe_line_server: Callable[..., LineServer],
) -> dict[str, str]:
    """What each ``localhost:PORT`` of the docs becomes while their examples run."""
    http = anyprobe_http_server({"/health": HttpReply(200, "UP"), "/": HttpReply(200, "home")})
    tcp = anyprobe_line_server({"PING": "PONG"})
    memcached = anyprobe_line_server(
        {
            "version": "VERSION 1.6.21",
            "stats": ["STAT curr_connections 3", "STAT get_hits 9", "STAT get_misses 1", "END"],
            "quit": CLOSE,
        }
    )
    return {
        "localhost:8000": f"127.0.0.1:{http.port}",
        "localhost:5432": f"127.0.0.1:{tcp.port}",
        "localhost:11211": f"127.0.0.1:{memcached.port}",
    }


def substitute(text: str, loopback: dict[str, str]) -> str:
    for placeholder, actual in loopback.items():
        text = text.replace(placeholder, actual)
    return text


def run_block(block: Block, workdir: Path, loopback: dict[str, str]) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    code = substitute(block.code, loopback)
    args = dict(part.split("=", 1) for part in block.argument.split() if "=" in part)
    if "file" in args:
        (workdir / args["file"]).write_text(code, encoding="utf-8")
        return
    if block.language == "python":
        script = workdir / f"_example_{block.line}.py"
        script.write_text(code, encoding="utf-8")
        commands = [[sys.executable, script.name]]
    elif block.language in ("console", "sh", "bash", "shell"):
        lines = [line[2:] for line in code.splitlines() if line.startswith("$ ")]
        assert lines, f"{block}: a console example to run needs '$ ' lines"
        commands = [["bash", "-c", line] for line in lines]
    else:
        pytest.fail(f"{block}: cannot run a {block.language} block (use file=NAME)")
    expected = int(args.get("exit", 0))
    for command in commands:
        proc = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == expected, (
            f"{block}: {command[-1]} exited {proc.returncode}, not {expected}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        assert "Traceback" not in proc.stderr, f"{block}:\n{proc.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE)
def test_examples_run(page: str, loopback: dict[str, str], tmp_path: Path) -> None:
    for block in blocks(page):
        for part in block.argument.split():
            if part.startswith("needs=") and not importlib.util.find_spec(part[6:]):
                pytest.skip(f"{block} needs {part[6:]}: pip install -e examples/anyprobe-example")
    ran = 0
    for block in blocks(page):
        if block.marker == "run":
            run_block(block, tmp_path, loopback)
            ran += 1
    assert ran


# -- generated reference sections ------------------------------------------------


@pytest.fixture(scope="module")
def builtin_manager() -> Iterator[PluginManager]:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    yield manager


def test_cli_reference_shows_every_command_and_option() -> None:
    text = docs_hooks.render((DOCS / "cli.md").read_text(), DOCS)
    with click.Context(cli) as ctx:
        for name in cli.list_commands(ctx):
            command = cli.get_command(ctx, name)
            assert command is not None
            assert f"## anyprobe {name}\n" in text, name
            for param in command.params:
                for opt in [*param.opts, *param.secondary_opts]:
                    if opt.startswith("-"):
                        assert opt in text, f"{name} {opt}"
    for option in ("--no-plugin-autoload", "--version", "--verbose"):
        assert option in text


def test_config_reference_shows_every_plugin_option(builtin_manager: PluginManager) -> None:
    text = docs_hooks.render((DOCS / "config.md").read_text(), DOCS)
    for name, probe in builtin_manager.probes.items():
        assert f"## Probe `{name}`" in text
        for field in describe_options(probe.Options):
            assert f"| `{field['name']}` |" in text, (name, field["name"])
    for name, reporter in builtin_manager.reporters.items():
        assert f"## Reporter `{name}`" in text
        for field in describe_options(reporter.Options):
            assert f"| `{field['name']}` |" in text, (name, field["name"])


def test_hook_reference_is_each_hooks_docstring() -> None:
    text = docs_hooks.render((DOCS / "hooks.md").read_text(), DOCS)
    assert "<!-- generated" not in text
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("anyprobe_"):
            first_line = (inspect.getdoc(function) or "").splitlines()[0]
            assert docs_hooks.rst_to_markdown(first_line) in text, name


def test_benchmark_index_links_every_benchmark_page() -> None:
    text = docs_hooks.render((DOCS / "benchmarks.md").read_text(), DOCS)
    for page in DOCS.glob("benchmarks-*.md"):
        assert f"]({page.name})" in text


def test_option_types_are_shown_readably() -> None:
    readable = docs_hooks.readable_type
    assert readable("Optional[Annotated[pathlib.Path, PathType(path_type='file')]]") == (
        "Path | None"
    )
    assert readable("pydantic.types.SecretStr | None") == "SecretStr | None"
    assert readable("Optional[Literal['smtp', 'imap']]") == "Literal['smtp', 'imap'] | None"
    assert readable("list[int | str]") == "list[int | str]"


def test_rst_docstrings_become_markdown() -> None:
    text = docs_hooks.rst_to_markdown(
        "Call ``register(X)``, see :class:`anyprobe.Probe`.\n\nExample::\n\n    register(X)\n"
    )
    assert "Call `register(X)`, see `anyprobe.Probe`." in text
    assert "Example:\n\n```python\nregister(X)\n```" in text
