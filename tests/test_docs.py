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

The reference pages (probes, reporters, the bridge, scale-out, runs, the
README) follow the same markers for their Python and shell blocks, and more:
each TOML block is loaded by the config loader, each ``anyprobe`` command of
a block "not run" is validated by the real CLI short of running its checks,
their Python examples run on asyncio and on trio, and the reporters' example
outputs are compared with what the reporters write for the same results.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import io
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import anyio
import click
import pytest

from anyprobe import (
    AnyprobeError,
    ErrorInfo,
    PluginManager,
    Result,
    RunSummary,
    Status,
    _config,
    hookspecs,
)
from anyprobe._cli import cli
from anyprobe._manager import describe_options
from anyprobe.testing import CLOSE, HttpReply, HttpServer, LineServer, make_result

from .reporter_samples import run_reporter

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
    "probe-in-60-lines.md",
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


def test_the_60_line_probe_is_under_60_lines() -> None:
    [probe] = [b for b in blocks("probe-in-60-lines.md") if "file=redis_probe.py" in b.argument]
    lines = probe.code.splitlines()
    assert len(lines) <= 60, len(lines)
    assert f"is {len(lines)} lines" in (DOCS / "probe-in-60-lines.md").read_text()


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


def run_block(
    block: Block, workdir: Path, loopback: dict[str, str], extra_env: dict[str, str] | None = None
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        **(extra_env or {}),
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


# -- the reference pages: probes, reporters, topics, the README ------------------
#
# Their TOML blocks are loaded by anyprobe's config loader (no marker needed).
# Their python and shell blocks carry a marker as the guide's do; a shell block
# that is "not run" (it names real hosts) still has each of its ``anyprobe``
# command lines parsed and validated by the real CLI, which stops short of
# running the checks; a python block that is "not run" is compiled and every
# ``anyprobe`` name it uses must exist.

#: The reference pages, relative to docs/ (the README is ``../README.md``).
REFERENCE = [
    *sorted(str(p.relative_to(DOCS)) for p in DOCS.glob("probes/*.md")),
    *sorted(str(p.relative_to(DOCS)) for p in DOCS.glob("reporters/*.md")),
    *(
        page
        for page in (
            "addresses.md",
            "bridge.md",
            "embedding.md",
            "scale-out.md",
            "monitor.md",
            "runs.md",
            "monitor.md",
            "peers.md",
            "reliability.md",
        )
        if (DOCS / page).exists()
    ),
    "../README.md",
]
SHELL_LANGUAGES = {"console", "sh", "bash", "shell"}

#: Options that name a file the loader requires to exist: the test creates
#: each under its temporary directory (a path, absolute or under ~, is re-rooted there).
FILE_OPTIONS = {"ca_file", "client_cert", "client_key", "key_file", "known_hosts", "resolv_conf"}

PEM_PLACEHOLDER = (
    "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"
)

#: The check a page's fragments (bare options, a lone ``[[reporter]]``) belong to.
FRAGMENT_CHECK = {
    "probes/ssh.md": 'url = "ssh://monitor@app1.example.com"',
    "probes/dns.md": 'url = "dns://example.com"',
    "probes/http.md": 'url = "https://example.com/"',
}
DEFAULT_FRAGMENT_CHECK = 'url = "tcp://db.example.com:5432"'


def test_every_example_in_the_reference_is_run_or_says_why_not() -> None:
    unmarked = [
        str(b)
        for page in REFERENCE
        for b in blocks(page)
        if b.language in SHELL_LANGUAGES | {"python"} and b.marker is None
    ]
    assert not unmarked, (
        f"examples with no <!-- run --> or <!-- not run: why --> marker: {unmarked}"
    )
    for page in REFERENCE:
        for block in blocks(page):
            if block.marker == "not run":
                assert len(block.argument) > 10, f"{block}: say why it is not run"


def toml_blocks() -> list[Block]:
    return [
        b
        for page in REFERENCE
        for b in blocks(page)
        if b.language == "toml" and b.marker != "not run"
    ]


def as_config(block: Block, workdir: Path) -> tuple[str, bool]:
    """``block`` as a whole config file in ``workdir`` (its files created), and
    whether it needs ``[[check]]`` tables (a server's config file does not)."""
    text = block.code
    document = tomllib.loads(text)
    if set(document) - set(_config.TOP_LEVEL):  # bare options of one check
        check = FRAGMENT_CHECK.get(block.page, DEFAULT_FRAGMENT_CHECK)
        text = f"[[check]]\n{check}\n{text}"
    elif "check" not in document and not {"module", "serve"} & set(document):
        text += f"\n[[check]]\n{DEFAULT_FRAGMENT_CHECK}\n"
    for value in sorted(set(file_option_values(tomllib.loads(text)))):
        created = workdir / value.lstrip("~/")
        created.parent.mkdir(parents=True, exist_ok=True)
        created.write_text(PEM_PLACEHOLDER)  # the loader wants PEM where it reads PEM
        for quote in ('"', "'"):
            text = text.replace(f"{quote}{value}{quote}", f'"{created}"')
    path = workdir / f"page-{block.line}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path), not {"module", "serve"} & set(document)


def file_option_values(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in FILE_OPTIONS and isinstance(value, str):
                yield value
            else:
                yield from file_option_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from file_option_values(item)


def config_error(block: Block, workdir: Path, manager: PluginManager) -> str:
    """The loader's error for ``block`` as a config file, or "" when it loads."""
    path, require_checks = as_config(block, workdir)
    try:
        loaded = _config.load_config(path, manager, require_checks=require_checks)
    except AnyprobeError as exc:
        return str(exc)
    assert loaded.targets or loaded.serve is not None
    return ""


@pytest.mark.parametrize("block", toml_blocks(), ids=str)
def test_toml_examples_load(
    block: Block, builtin_manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Secret options (*_env) must name variables that are set when the config is loaded.
    for key, variable in secret_variables(tomllib.loads(block.code)):
        placeholder = {
            "url_env": "http://127.0.0.1/placeholder",
            "token_env": secrets.token_urlsafe(32),  # a push token: 128 bits at least
        }.get(key, "placeholder")
        monkeypatch.setenv(variable, placeholder)
    error = config_error(block, tmp_path, builtin_manager)
    assert not error, f"{block}: {error}"


def secret_variables(node: object) -> Iterator[tuple[str, str]]:
    """(option, variable) for every ``*_env`` option (``header_env``: each value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_env") and isinstance(value, str):
                yield key, value
            elif key.endswith("_env") and isinstance(value, dict):
                yield from ((key, str(v)) for v in value.values())
            else:
                yield from secret_variables(value)
    elif isinstance(node, list):
        for item in node:
            yield from secret_variables(item)


def anyprobe_command_lines(block: Block) -> list[list[str]]:
    """The ``anyprobe`` commands of a shell block, as argument lists: in a console
    block the ``$ `` lines, in a script every line; ``\\`` continues a line."""
    lines = block.code.splitlines()
    if block.language == "console":
        commands, current = [], None
        for line in lines:
            if current is not None:
                current += " " + line.strip()
            elif line.startswith("$ "):
                current = line[2:]
            if current is not None and not current.endswith("\\"):
                commands.append(current)
                current = None
            elif current is not None:
                current = current[:-1]
    else:
        commands = []
        for line in lines:
            if commands and commands[-1].endswith("\\"):
                commands[-1] = commands[-1][:-1] + " " + line.strip()
            else:
                commands.append(line)
    parsed = [shlex.split(c, comments=True) for c in commands]
    return [args for args in parsed if args and args[0] == "anyprobe"]


#: What the files a "not run" command names hold while it is validated.
COMMAND_FILES = {
    "checks.toml": f"[[check]]\n{DEFAULT_FRAGMENT_CHECK}\n",
    "targets.txt": "tcp://db.example.com:5432\nhttps://example.com/health\n",
    "shop-urls.txt": "https://shop.example.com/\nhttps://shop.example.com/cart\n",
}


def not_run_commands() -> list[tuple[Block, list[str]]]:
    return [
        (b, args)
        for page in REFERENCE
        for b in blocks(page)
        if b.language in SHELL_LANGUAGES and b.marker == "not run"
        for args in anyprobe_command_lines(b)
    ]


def validate_command(
    args: list[str],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, list[str]]:
    """Run ``anyprobe ARGS`` in this process up to the point where checks would
    start: arguments, targets, ``--set`` options, reporters and config files go
    through the real CLI. Returns the exit status, stderr and what was validated."""
    import anyprobe._cli
    import anyprobe._cli_history
    import anyprobe._serve

    for name, text in COMMAND_FILES.items():
        (workdir / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(workdir)
    # --shard auto/N takes its index from the runner; --shard sets these too.
    monkeypatch.setenv("ANYPROBE_SHARD_INDEX", "0")
    monkeypatch.setenv("ANYPROBE_RUN_ID", "docs")
    for variable in ("JOB_COMPLETION_INDEX", "NOMAD_ALLOC_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    args = prepare_set_options(args, workdir, monkeypatch)
    validated: list[str] = []

    def execute(state: object, targets: list[Any], reporters: list[Any], run_args: object) -> int:
        validated.append(f"{len(targets)} targets, {len(reporters)} reporters")
        return 0

    def serve(manager: PluginManager, config_path: str | None, **serve_args: Any) -> int:
        anyprobe._serve.parse_listen(serve_args["listen"])
        anyprobe._serve.AllowList(serve_args["allow_targets"])
        validated.append(f"serve {config_path}")
        return 0

    def history(manager: PluginManager, names: Any, **history_args: Any) -> int:
        anyprobe._cli_history.parse_since(history_args["since"])
        validated.append(f"history {history_args['config_path'] or history_args['store_url']}")
        return 0

    with monkeypatch.context() as patch:
        patch.setattr(anyprobe._cli, "_execute", execute)
        patch.setattr(anyprobe._serve, "main", serve)
        patch.setattr(anyprobe._cli_history, "history_main", history)
        with pytest.raises(SystemExit) as exit_info:
            anyprobe._cli.main(["--no-plugin-autoload", *args[1:]])
    code = exit_info.value.code
    return code if isinstance(code, int) else 0, capsys.readouterr().err, validated


def prepare_set_options(
    args: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """``args`` with each file a ``--set`` option names created under ``workdir``
    (the loader checks files exist), and the variables of header_env set."""
    args = list(args)
    for index in range(1, len(args)):
        key, eq, value = args[index].partition("=")
        if args[index - 1] != "--set" or not eq:
            continue
        if key in FILE_OPTIONS:
            created = workdir / value.strip("\"'").lstrip("~/")
            created.parent.mkdir(parents=True, exist_ok=True)
            created.write_text(PEM_PLACEHOLDER)
            args[index] = f"{key}={created}"
        elif key == "header_env":
            for variable in tomllib.loads(f"v = {value}")["v"].values():
                monkeypatch.setenv(variable, "placeholder")
    return args


NOT_RUN_COMMANDS = not_run_commands()


@pytest.mark.parametrize(
    ("block", "args"),
    NOT_RUN_COMMANDS,
    ids=[f"{block} {shlex.join(args)[:60]}" for block, args in NOT_RUN_COMMANDS],
)
def test_commands_not_run_are_valid(
    block: Block,
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err, validated = validate_command(args, tmp_path, monkeypatch, capsys)
    assert code == 0, f"{block}: {shlex.join(args)}: {err}"
    if args[1] in ("check", "run", "serve"):
        assert validated, f"{block}: {shlex.join(args)} validated nothing"


def test_example_checks_catch_a_wrong_example(
    builtin_manager: PluginManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each way of checking an example fails on a wrong one."""
    monkeypatch.chdir(tmp_path)

    def toml(code: str, page: str = "probes/tcp.md") -> str:
        return config_error(Block(page, 1, "toml", code, None, ""), tmp_path, builtin_manager)

    assert "unknown option" in toml('[[check]]\nurl = "tcp://db:5432"\nexpekt = "+OK"\n')
    assert "ca_file" in toml('[[check]]\nurl = "tls://db:5432"\nca_file = 3\n')
    assert toml('[[check]]\nurl = "tls://db:5432"\nca_file = "/etc/ssl/ca.pem"\n') == ""
    assert (tmp_path / "etc/ssl/ca.pem").is_file()  # created where the loader looks
    assert "credentials" in toml('command = "uptime"\n', "probes/ssh.md")
    assert "unknown reporter" in toml('[[reporter]]\ntype = "jsonl2"\n')
    assert toml('[[reporter]]\ntype = "junit"\nsuite_name = "nightly"\n') == ""

    command = shlex.split("anyprobe check tcp://db:5432 --set expect_timeout=soon")
    code, err, _ = validate_command(command, tmp_path, monkeypatch, capsys)
    assert code == 3 and "expect_timeout" in err
    code, err, _ = validate_command(
        ["anyprobe", "run", "missing.toml"], tmp_path, monkeypatch, capsys
    )
    assert code == 3 and "missing.toml" in err
    code, err, validated = validate_command(
        shlex.split("anyprobe run checks.toml --shard auto/1"), tmp_path, monkeypatch, capsys
    )
    assert (code, validated) == (0, ["1 targets, 1 reporters"]), err

    assert python_problems("import anyprobe\nanyprobe.Outcome.okay('x')\n")
    assert python_problems("from anyprobe.bridge import asyncio_brige\n")
    assert python_problems("class P(Base):\n    pass\n")
    assert not python_problems("import anyprobe\nanyprobe.Outcome.ok('x')\n")


#: Imported first by every Python process of a reference example: ``anyio.run``
#: without a ``backend`` runs on ANYPROBE_DOCS_BACKEND, so each example that
#: starts an event loop runs on asyncio and on trio.
BACKEND_SITECUSTOMIZE = """\
import os

_backend = os.environ.get("ANYPROBE_DOCS_BACKEND")
if _backend:
    import anyio

    _run = anyio.run

    def _run_on_backend(func, *args, backend=_backend, backend_options=None):
        return _run(func, *args, backend=backend, backend_options=backend_options)

    anyio.run = _run_on_backend
"""


def backend_env(workdir: Path, backend: str) -> dict[str, str]:
    """The environment that makes ``anyio.run`` default to ``backend``."""
    site = workdir / "_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BACKEND_SITECUSTOMIZE, encoding="utf-8")
    return {
        "ANYPROBE_DOCS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }


RUNNABLE_REFERENCE = [page for page in REFERENCE if any(b.marker == "run" for b in blocks(page))]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("page", RUNNABLE_REFERENCE)
def test_reference_examples_run(
    page: str, backend: str, loopback: dict[str, str], tmp_path: Path
) -> None:
    extra_env = backend_env(tmp_path, backend)
    ran = 0
    for block in blocks(page):
        if block.marker == "run":
            run_block(block, tmp_path, loopback, extra_env)
            ran += 1
    assert ran


def python_problems(code: str) -> list[str]:
    """What would stop a Python example from running, short of running it: a
    syntax error, an undefined name (pyflakes' checks, through ruff), an
    ``anyprobe`` module or name that does not exist."""
    import ast
    import importlib

    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    problems = []
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--quiet",
            "--isolated",
            "--select",
            "F821,F822,F823,F811",
            "--output-format",
            "concise",
            "--stdin-filename",
            "example.py",
            "-",
        ],
        input=code,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems += [line for line in lint.stdout.splitlines() if line.strip()]

    def resolve(dotted: str) -> None:
        parts = dotted.split(".")
        for index in range(len(parts), 0, -1):
            try:
                found: object = importlib.import_module(".".join(parts[:index]))
            except ImportError:
                continue
            for attribute in parts[index:]:
                if not hasattr(found, attribute):
                    problems.append(f"{dotted}: no {attribute!r}")
                    return
                found = getattr(found, attribute)
            return
        problems.append(f"{dotted}: no such module")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "anyprobe":
                    resolve(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "anyprobe":
            for alias in node.names:
                resolve(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Attribute):
            chain = []
            current: ast.expr = node
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "anyprobe":
                resolve(".".join(["anyprobe", *reversed(chain)]))
    return problems


@pytest.mark.parametrize(
    "block",
    [
        b
        for page in REFERENCE
        for b in blocks(page)
        if b.language == "python" and b.marker == "not run"
    ],
    ids=str,
)
def test_python_examples_not_run_compile_and_use_real_names(block: Block) -> None:
    assert not python_problems(block.code), f"{block}: {python_problems(block.code)}"


@pytest.mark.slow
def test_reference_examples_run_on_the_backend_asked_for(
    loopback: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "import anyio, sniffio\n"
        "async def main() -> None:\n"
        "    assert sniffio.current_async_library() == 'trio'\n"
        "anyio.run(main)\n"
    )
    block = Block("self-test", 1, "python", code, "run", "")
    run_block(block, tmp_path, loopback, backend_env(tmp_path, "trio"))
    with pytest.raises(AssertionError, match="exited 1"):
        run_block(block, tmp_path, loopback, backend_env(tmp_path, "asyncio"))


# -- example outputs: what the reporters write for the results the pages show ----
#
# The reporter pages show one run: "postgres" (refused), "ssh" (ok) and "slow
# api" (a warning). The CSV example carries every field of the first two; the
# test rebuilds those results from it, renders them with each reporter and
# compares with what each page shows.


def example(page: str, language: str, index: int = 0) -> str:
    """The ``index``-th ``language`` block of ``page``."""
    return [b.code for b in blocks(page) if b.language == language][index]


PHASES = ["resolve", "connect", "tls", "first_byte", "transfer"]


def results_of_csv_example() -> list[Result]:
    rows = list(csv.DictReader(io.StringIO(example("reporters/csv.md", "text"))))
    assert rows
    return [
        Result(
            name=row["name"],
            target=row["target"],
            probe=row["probe"],
            status=Status(row["status"]),
            summary=row["summary"],
            started=datetime.fromisoformat(row["started"]),
            duration=float(row["duration"]),
            attempts=int(row["attempts"]),
            # the file has them sorted by name; a check measures them in this order
            phases=dict(
                sorted(json.loads(row["phases"]).items(), key=lambda p: PHASES.index(p[0]))
            ),
            metrics=json.loads(row["metrics"]),
            error=ErrorInfo(row["error_type"], row["error_message"], row["error_phase"] or None)
            if row["error_type"]
            else None,
            labels=json.loads(row["labels"]),
        )
        for row in rows
    ]


def slow_api() -> Result:
    return Result(
        name="slow api",
        target="tcp://127.0.0.1:47001/api",
        probe="tcp",
        status=Status.WARNING,
        summary="connected to 127.0.0.1:47001 in 2.2 ms (took 0.002 s, over warning_after 1e-06 s)",
        started=datetime.fromisoformat("2026-11-26T13:33:25.814264+00:00"),
        duration=0.002484182999978657,
        attempts=1,
        phases={"resolve": 8e-06, "connect": 0.002193},
        metrics={"address": "127.0.0.1", "port": 47001},
        error=None,
        labels={},
    )


def doc_run() -> tuple[list[Result], RunSummary]:
    """The pages' run, in completion order, and its summary (the JUnit example's time)."""
    postgres, ssh = results_of_csv_example()
    results = [postgres, ssh, slow_api()]
    counts = {Status.OK: 1, Status.WARNING: 1, Status.CRITICAL: 1}
    return results, RunSummary(total=3, counts=counts, not_finished=0, duration=0.004153)


async def render(
    manager: PluginManager,
    name: str,
    results: list[Result],
    summary: RunSummary,
    path: Path,
    **options: Any,
) -> str:
    _, reporter = _config.make_reporter(manager, name, {"path": str(path), **options})
    await run_reporter(reporter, results, summary)
    return await anyio.Path(path).read_text(encoding="utf-8")


def test_jsonl_keys_in_the_pages_are_the_records() -> None:
    """The JSON records the webhook page shows use the JSON Lines contract's keys."""
    keys = set(results_of_csv_example()[0].as_dict())
    body = json.loads(example("reporters/webhook.md", "json"))
    for record in body["results"]:
        assert set(record) - {"..."} <= keys, set(record) - keys


@pytest.mark.anyio
async def test_csv_markdown_and_nagios_examples_are_what_the_reporters_write(
    builtin_manager: PluginManager, tmp_path: Path
) -> None:
    results, summary = doc_run()
    written = await render(builtin_manager, "csv", results[:2], summary, tmp_path / "r.csv")
    assert written == example("reporters/csv.md", "text")

    written = await render(builtin_manager, "markdown", results, summary, tmp_path / "r.md")
    assert written.strip() == example("reporters/markdown.md", "markdown").strip()

    written = await render(builtin_manager, "nagios", results, summary, tmp_path / "r.txt")
    assert written == example("reporters/nagios.md", "text", 2)
    one = Result(
        name="tcp://127.0.0.1:47001",
        target="tcp://127.0.0.1:47001",
        probe="tcp",
        status=Status.OK,
        summary="connected to 127.0.0.1:47001 in 0.7 ms",
        started=results[0].started,
        duration=0.00088,
        attempts=1,
        phases={"resolve": 0.00002, "connect": 0.000733},
        metrics={"address": "127.0.0.1", "port": 47001},
        error=None,
        labels={},
    )
    one_summary = RunSummary(total=1, counts={Status.OK: 1}, not_finished=0, duration=0.00088)
    written = await render(builtin_manager, "nagios", [one], one_summary, tmp_path / "one.txt")
    assert written == example("reporters/nagios.md", "text", 1)
    web = Result(
        name="https://www.example.com/",
        target="https://www.example.com/",
        probe="http",
        status=Status.WARNING,
        summary="HTTP 200 in 812 ms",
        started=results[0].started,
        duration=0.812,
        attempts=1,
        phases={},
        metrics={"http_status": 200},
        error=None,
        labels={},
        # The check was held to the thresholds of the example's [defaults].
        thresholds=tomllib.loads(example("reporters/nagios.md", "toml"))["defaults"],
    )
    web_summary = RunSummary(total=1, counts={Status.WARNING: 1}, not_finished=0, duration=0.812)
    configured = tomllib.loads(example("reporters/nagios.md", "toml"))["reporter"][0]
    options = {k: v for k, v in configured.items() if k != "type"}
    written = await render(
        builtin_manager, "nagios", [web], web_summary, tmp_path / "web.txt", **options
    )
    assert written == example("reporters/nagios.md", "text", 3)


@pytest.mark.anyio
async def test_junit_example_is_what_the_reporter_writes(
    builtin_manager: PluginManager, tmp_path: Path
) -> None:
    results, summary = doc_run()
    written = await render(builtin_manager, "junit", results, summary, tmp_path / "r.xml")
    shown = ElementTree.fromstring(example("reporters/junit.md", "xml").encode())
    actual = ElementTree.fromstring(written.encode())
    assert (shown.tag, shown.attrib) == (actual.tag, actual.attrib)
    shown_suite, actual_suite = shown.find("testsuite"), actual.find("testsuite")
    assert shown_suite is not None and actual_suite is not None
    assert set(shown_suite.attrib) == set(actual_suite.attrib)
    for key in ("name", "tests", "failures", "errors", "skipped", "time"):
        assert shown_suite.get(key) == actual_suite.get(key), key

    def described(element: ElementTree.Element) -> list[tuple[str, dict[str, str], str]]:
        return [(e.tag, e.attrib, (e.text or "").strip()) for e in element.iter()]

    assert described(shown_suite.find("properties")) == described(actual_suite.find("properties"))  # type: ignore[arg-type]
    cases = {case.get("name"): case for case in actual_suite.iter("testcase")}
    shown_cases = list(shown_suite.iter("testcase"))
    assert len(shown_cases) == 2
    for case in shown_cases:
        assert described(case) == described(cases[case.get("name")])


@pytest.mark.anyio
async def test_prometheus_example_is_what_the_reporter_writes() -> None:
    from prometheus_client import generate_latest

    from anyprobe.plugins.prometheus import build_registry

    results, summary = doc_run()
    now = 1.7957000058375216e09
    actual = generate_latest(build_registry(results, summary, now=now)).decode().splitlines()
    shown = [line for line in example("reporters/prometheus.md", "text").splitlines()]
    missing = [line for line in shown if line != "..." and line not in actual]
    assert not missing
    api = Result(
        name="api",
        target="https://api.example.com/health",
        probe="http",
        status=Status.OK,
        summary="HTTP 200 in 41 ms",
        started=datetime.fromtimestamp(1.800828000123456e09 - 61 * 86400, tz=UTC),
        duration=0.041,
        attempts=1,
        phases={"first_byte": 0.009},
        metrics={"http_status": 200, "cert_expiry_days": 61},
        error=None,
        labels={},
        details={"tls": {"certificates": [{"fingerprint_sha256": "ab" * 32, "sans": ["a"]}]}},
    )
    actual = generate_latest(build_registry([api])).decode().splitlines()
    missing = [
        line
        for line in example("reporters/prometheus.md", "text", 1).splitlines()
        if line not in actual
    ]
    assert not missing
    page = (DOCS / "reporters/prometheus.md").read_text(encoding="utf-8")
    table = page.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = {
        name.replace("<probe>", "tcp") for name in re.findall(r"^\| `([\w<>]+)", table, re.M)
    }
    interrupted = RunSummary(
        total=4, counts=summary.counts, not_finished=1, duration=1.0, interrupted="SIGINT"
    )
    exposed = {
        line.split()[2]
        for registry in (build_registry(results, interrupted), build_registry([api]))
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("# TYPE")
    }
    assert len(documented) > 5
    assert documented <= exposed, documented - exposed


@pytest.mark.anyio
async def test_webhook_examples_are_what_the_reporter_posts(
    builtin_manager: PluginManager, webhook_receiver: Any
) -> None:
    results, _ = doc_run()
    postgres, ssh = results[:2]
    counts = {Status.OK: 1, Status.CRITICAL: 1}
    summary = RunSummary(total=2, counts=counts, not_finished=0, duration=0.0185)
    for options in ({}, {"template": "slack"}, {"template": "slack", "mode": "per_result"}):
        _, reporter = _config.make_reporter(
            builtin_manager, "webhook", {"url": webhook_receiver.url, **options}
        )
        await run_reporter(reporter, [postgres, ssh], summary)
    batch, slack_batch, slack_postgres, slack_ssh = webhook_receiver.bodies()
    shown = json.loads(example("reporters/webhook.md", "json", 0))
    assert shown["summary"] == batch["summary"]
    for shown_record, record in zip(shown["results"], batch["results"], strict=True):
        assert {k: v for k, v in shown_record.items() if k != "..."}.items() <= record.items()
    assert json.loads(example("reporters/webhook.md", "json", 1)) == slack_postgres
    assert json.loads(example("reporters/webhook.md", "json", 2)) == slack_batch
    assert slack_ssh == {"text": f"OK ssh: {ssh.summary}"}  # the same shape for each result


def test_table_example_is_what_the_reporter_prints() -> None:
    from anyprobe.plugins.table import render_plain

    shown = example("probes/http.md", "console").splitlines()
    url = "https://example.com/health"
    assert shown[0].startswith(f"$ anyprobe check {url} ")
    result = make_result(url, "ok", "HTTP 200 in 61 ms", target=url, probe="http", duration=0.0612)
    printed = render_plain([result], "1 check: 1 ok in 0.06 s", explain=False)
    assert "\n".join(shown[1:]) + "\n" == printed


def test_yaml_examples_parse() -> None:
    """Prometheus, Kubernetes and CI snippets are at least valid YAML."""
    import yaml

    found = [b for page in REFERENCE for b in blocks(page) if b.language == "yaml"]
    assert found
    for block in found:
        assert yaml.safe_load(block.code), block
