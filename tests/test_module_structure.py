"""Module boundaries that show the public surface (issue 15).

- **No import cycle** among the modules of ``core/`` (``anyprobe``) and
  ``plugins/`` (``anyprobe.plugins``). The graph is built statically, with
  ``ast``, from every ``import`` and ``from ... import`` statement: at module
  level and inside functions alike (an import inside a function is a
  dependency too; it only runs later). Imports under ``if TYPE_CHECKING:``
  are left out, by choice: they never run, so they cannot leave a module half
  initialised, and they are how a lower module names a higher one's type in
  an annotation without depending on it (``anyprobe.bridge`` annotates a
  ``CheckContext``, ``anyprobe.hookspecs`` a ``RunInfo``). The package's
  lazy exports (``core/__init__.py`` imports its submodules only under
  ``TYPE_CHECKING`` and through ``importlib`` on attribute access) therefore
  add no edge: a submodule may import ``__version__`` from the package.
- **Size**: no module of ``core/`` or ``plugins/`` over 800 lines, no function
  (or method) over 80 lines, from its ``def`` line to its last line. There is
  no list of exceptions. When these tests were written, these modules were
  over the limits and being split on other branches, so the tests fail until
  those are merged: ``plugins/http.py`` (1,482 lines; ``_exchange_h11`` 103,
  ``_pooled_request`` 94) and ``plugins/dns.py`` (1,018 lines;
  ``_exchange_doh`` 95, ``_judge`` 85).
- **The public surface**: each public module defines ``__all__`` naming only
  names it has; ``dir(anyprobe)`` shows the API and no private helper; the
  API is the table "Every public name" of docs/embedding.md; no page of the
  docs has a reader import a private (``_``-prefixed) module. When these
  tests were written, ``anyprobe.net`` had no ``__all__`` and
  docs/writing-a-probe.md pointed readers at ``anyprobe._inputs``; both are
  being reworked on another branch.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import anyprobe

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"anyprobe": ROOT / "core", "anyprobe.plugins": ROOT / "plugins"}
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80
PUBLIC_MODULES = (
    "anyprobe",
    "anyprobe.net",
    "anyprobe.tls",
    "anyprobe.bridge",
    "anyprobe.masking",
    "anyprobe.hookspecs",
    "anyprobe.testing",
)
DOC_PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def modules() -> dict[str, Path]:
    """Every module of core/ and plugins/ by its import name."""
    found = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


@dataclass(frozen=True)
class Edge:
    target: str
    line: int


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """The ids of every node inside an ``if TYPE_CHECKING:`` block."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for statement in node.body:
                    skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of anyprobe's modules."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Edge]:
    """The modules of ``known`` that ``module`` imports (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    is_package = path.stem == "__init__"
    edges = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            # ``from pkg import name``: name may be a submodule, or an attribute of pkg.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                edges.append(Edge(target, node.lineno))
    return edges


def import_graph() -> dict[str, list[Edge]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def find_cycle(graph: dict[str, list[Edge]]) -> list[tuple[str, Edge]] | None:
    """One import cycle as (module, edge) steps, or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[tuple[str, Edge]] = []
        on_path = {start: 0}
        stack = [(start, iter(graph[start]))]
        while stack:
            module, edges = stack[-1]
            edge = next(edges, None)
            if edge is None:
                stack.pop()
                done.add(module)
                on_path.pop(module, None)
                if path:
                    path.pop()
                continue
            if edge.target in on_path:
                return [*path[on_path[edge.target] :], (module, edge)]
            if edge.target in done:
                continue
            path.append((module, edge))
            on_path[edge.target] = len(path)
            stack.append((edge.target, iter(graph[edge.target])))
    return None


def describe_cycle(cycle: list[tuple[str, Edge]]) -> str:
    known = modules()
    steps = [
        f"{module} imports {edge.target} ({known[module].relative_to(ROOT)}:{edge.line})"
        for module, edge in cycle
    ]
    return "import cycle: " + ", ".join(steps)


# -- imports -------------------------------------------------------------------------


def test_the_import_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # core/_cli.py imports the serve command's module only when serve runs.
    assert "anyprobe._serve" in {edge.target for edge in graph["anyprobe._cli"]}
    # Built-in plugins import the public package, never the other way round.
    assert "anyprobe" in {edge.target for edge in graph["anyprobe.plugins.ssh"]}


def test_find_cycle_names_every_step_of_a_cycle() -> None:
    graph = {
        "a": [Edge("b", 3)],
        "b": [Edge("c", 5)],
        "c": [Edge("a", 7), Edge("d", 8)],
        "d": [],
    }
    assert find_cycle(graph) == [("a", Edge("b", 3)), ("b", Edge("c", 5)), ("c", Edge("a", 7))]
    assert find_cycle({"a": [Edge("b", 1)], "b": [], "c": [Edge("a", 2)]}) is None


def test_no_import_cycle_among_anyprobes_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, describe_cycle(cycle or [])


def test_core_never_imports_the_plugins() -> None:
    graph = import_graph()
    offenders = [
        f"{module} imports {edge.target} (line {edge.line})"
        for module, edges in graph.items()
        if not module.startswith("anyprobe.plugins")
        for edge in edges
        if edge.target.startswith("anyprobe.plugins")
    ]
    assert not offenders, offenders


# -- size ------------------------------------------------------------------------------


def test_no_module_over_800_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in modules().values()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split by concept): {long}"


def test_no_function_over_80_lines() -> None:
    long = {}
    for path in modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


# -- the public surface ------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_defines_all_with_names_it_has(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ names something twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what {name} does not have: {missing}"
    private = [n for n in exported if n.startswith("_") and not n.startswith("__")]
    assert not private, f"{name}.__all__ exports private names: {private}"


def test_dir_of_anyprobe_is_the_api_and_public_submodules() -> None:
    # A private submodule, once imported, is still not shown; a public one is.
    import anyprobe._model
    import anyprobe.net

    shown = {n for n in dir(anyprobe) if not (n.startswith("__") and n.endswith("__"))}
    submodules = {n for n in shown if f"anyprobe.{n}" in {*PUBLIC_MODULES, "anyprobe.plugins"}}
    assert "net" in submodules
    assert shown - submodules == {n for n in anyprobe.__all__ if not n.startswith("__")}
    assert "__version__" in dir(anyprobe)
    assert not [n for n in shown if n.startswith("_")]


def documented_api() -> set[str]:
    """The names in docs/embedding.md's table "Every public name"."""
    page = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    section = page.split("\n## Every public name\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    return {
        name for line in table for name in re.findall(r"`anyprobe\.(\w+)`", line.split(" | ")[0])
    }


def test_the_api_is_what_the_docs_list() -> None:
    documented = documented_api()
    exported = set(anyprobe.__all__)
    assert not exported - documented, (
        f"docs/embedding.md 'Every public name' misses {sorted(exported - documented)}"
    )
    assert not documented - exported, (
        f"docs/embedding.md 'Every public name' lists what anyprobe does not export: "
        f"{sorted(documented - exported)}"
    )


PRIVATE_MODULE = re.compile(r"\banyprobe\.(?:plugins\.)?_[a-z]\w*")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def test_no_docs_page_has_readers_import_a_private_module() -> None:
    """Code in the docs never names a private module; prose names one only as
    an internal (the paragraph says so), never as something to import or use."""
    problems = []
    for path in DOC_PAGES:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        for block in FENCE.findall(text):
            problems += [f"{where}: code uses {m}" for m in PRIVATE_MODULE.findall(block)]
        prose = FENCE.sub("", text)
        for paragraph in re.split(r"\n\s*\n", prose):
            names = PRIVATE_MODULE.findall(paragraph)
            if names and "internal" not in paragraph.lower():
                problems.append(f"{where}: {', '.join(names)} named as if public")
    assert not problems, "\n".join(problems)
