"""mkdocs hooks for anyprobe's documentation site (``hooks:`` in mkdocs.yml).

Reference sections are generated from the code at build time, so they cannot
drift from it: a page holds a marker, the hook puts the generated Markdown
in its place.

- ``<!-- generated: cli -->``: every command's ``--help``, from the click commands.
- ``<!-- generated: config -->``: ``[defaults]``, ``[[check]]``, ``[[reporter]]`` and
  every built-in probe's and reporter's options, from the pydantic models.
- ``<!-- generated: hook NAME -->``: the signature and docstring of hookspec NAME.
- ``<!-- generated: benchmarks -->``: a list of the ``benchmarks-*.md`` pages.

The navigation is built here too, so that a new probe, reporter or benchmark
page appears in it without an edit to mkdocs.yml.

tests/test_docs.py imports this module to check the generated text.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!-- generated: (\w+)(?: (\w+))? -->")


# -- navigation --------------------------------------------------------------------


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def build_nav(docs: Path) -> list[Any]:
    """The site's navigation; per-plugin and benchmark pages are found by name."""

    def pages(pattern: str, first: str | None = None) -> list[Any]:
        found = sorted(docs.glob(pattern))
        entries: list[Any] = []
        if first and (docs / first).exists():
            entries.append({_title(docs / first): first})
        for path in found:
            relative = path.relative_to(docs).as_posix()
            if relative != first:
                entries.append({_title(path): relative})
        return entries

    def existing(*names: str) -> list[str]:
        return [name for name in names if (docs / name).exists()]

    return [
        *existing("index.md", "getting-started.md"),
        {
            "Using anyprobe": existing(
                "cli.md",
                "config.md",
                "runs.md",
                "addresses.md",
                "monitor.md",
                "scale-out.md",
                "migration.md",
                "peers.md",
            )
        },
        {"Probes": pages("probes/*.md")},
        {"Reporters": pages("reporters/*.md", first="reporters/index.md")},
        {"Embedding": existing("embedding.md", "bridge.md")},
        {
            "Writing plugins": existing(
                "writing-a-probe.md", "probe-in-60-lines.md", "writing-a-reporter.md", "hooks.md"
            )
        },
        {"Benchmarks": pages("benchmarks*.md", first="benchmarks.md")},
        *existing("reliability.md"),
    ]


# -- generated sections ------------------------------------------------------------


def cli_reference() -> str:
    """Every command's help as ``anyprobe COMMAND --help`` prints it."""
    import click

    from anyprobe._cli import cli

    parts = []
    with click.Context(cli, info_name="anyprobe", terminal_width=100) as ctx:
        parts.append("## anyprobe\n\n```text\n" + cli.get_help(ctx) + "\n```\n")
        for name in cli.list_commands(ctx):
            command = cli.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            with click.Context(command, info_name=name, parent=ctx, terminal_width=100) as sub:
                text = command.get_help(sub)
            parts.append(f"## anyprobe {name}\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _code_cell(value: Any) -> str:
    # A pipe inside a code span does not split a table cell (Python-Markdown).
    return "`" + str(value).replace("\n", " ").replace("`", "'") + "`"


def readable_type(text: str) -> str:
    """``Optional[Annotated[pathlib.Path, PathType(...)]]`` as ``Path | None``."""
    text = re.sub(r"Annotated\[([\w.]+), [^\]]*\]", r"\1", text)
    text = re.sub(r"\b(?:pathlib|pydantic\.types)\.", "", text)
    optional = re.fullmatch(r"Optional\[(.*)\]", text)
    return f"{optional.group(1)} | None" if optional else text


def options_table(fields: list[dict[str, Any]]) -> str:
    """A Markdown table of options as :func:`anyprobe._manager.describe_options` gives them."""
    rows = ["| option | type | default | description |", "|---|---|---|---|"]
    for f in fields:
        default = "required" if f["required"] else _code_cell(repr(f["default"]))
        rows.append(
            f"| `{f['name']}` | {_code_cell(readable_type(f['type']))} | {default} | "
            f"{_cell(f['description'])} |"
        )
    return "\n".join(rows) + "\n"


def config_reference(docs: Path | None = None) -> str:
    """The config file's tables and every built-in plugin's options, from the models."""
    from anyprobe import PluginManager
    from anyprobe._config import CheckSettings, RunDefaults
    from anyprobe._manager import describe_options

    manager = PluginManager()
    manager.load_entrypoints(autoload=False)  # anyprobe's own plugins only
    out = [
        "## `[defaults]`\n",
        "Run settings, plus any probe option (it applies to every check whose probe has it).\n",
        options_table(describe_options(RunDefaults)),
        "## `[[check]]`\n",
        "Core's fields; every other key is an option of the probe the URL's scheme picks.\n",
        options_table(describe_options(CheckSettings)),
        "## `[[reporter]]`\n",
        "`type` names the reporter; the other keys are its options.\n",
    ]
    for name, probe in sorted(manager.probes.items()):
        schemes = ", ".join(f"`{s}://`" for s in probe.schemes)
        page = f"probes/{name}.md"
        link = f" ([{name} probe]({page}))" if docs and (docs / page).exists() else ""
        out.append(f"## Probe `{name}`: {schemes}\n")
        out.append(f"{probe.description}{link}\n")
        out.append(options_table(describe_options(probe.Options)))
    for name, reporter in sorted(manager.reporters.items()):
        page = f"reporters/{name}.md"
        link = f" ([{name} reporter]({page}))" if docs and (docs / page).exists() else ""
        out.append(f"## Reporter `{name}`\n")
        out.append(f"{reporter.description}{link}\n")
        out.append(options_table(describe_options(reporter.Options)))
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The little reStructuredText docstrings use: ````code````, roles, ``::`` blocks."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-2].rstrip() + ":" if line.strip() != "::" else "")
            index += 1
            block: list[str] = []
            while index < len(lines) and (not lines[index].strip() or lines[index][:1] == " "):
                block.append(lines[index])
                index += 1
            body = inspect.cleandoc("\n".join(block))
            out += ["", "```python", body, "```", ""]
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


def hook_reference(name: str) -> str:
    """Hookspec ``name``: its signature and its docstring."""
    from anyprobe import hookspecs

    function = getattr(hookspecs, name, None)
    if function is None or not name.startswith("anyprobe_"):
        raise ValueError(f"no hookspec named {name!r} in anyprobe.hookspecs")
    signature = f"def {name}{inspect.signature(function, eval_str=False)}: ..."
    signature = signature.replace("'", "")
    doc = inspect.getdoc(function) or ""
    return f"```python\n{signature}\n```\n\n{rst_to_markdown(doc)}\n"


def benchmark_index(docs: Path) -> str:
    """One line per benchmarks-*.md page: its title, linked."""
    pages = sorted(docs.glob("benchmarks-*.md"))
    if not pages:
        return "No benchmark has been recorded yet.\n"
    return "".join(f"- [{_title(p)}]({p.name})\n" for p in pages)


def render(markdown: str, docs: Path) -> str:
    """``markdown`` with every generated marker replaced."""

    def replace(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "cli":
            return cli_reference()
        if kind == "config":
            return config_reference(docs)
        if kind == "hook" and arg:
            return hook_reference(arg)
        if kind == "benchmarks":
            return benchmark_index(docs)
        raise ValueError(f"unknown generated section {match.group(0)}")

    return MARKER.sub(replace, markdown)


# -- mkdocs hook functions ---------------------------------------------------------


def on_config(config: Any) -> Any:
    config["nav"] = build_nav(Path(config["docs_dir"]))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown, Path(config["docs_dir"]))
