"""A check imports only the plugins its targets and reporters need (issue 18).

The modules a run imported are read from ``sys.modules`` when the real
``anyprobe`` command exits, in a subprocess started for each test.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from anyprobe._manager import BUILTIN_PLUGINS, BUILTIN_REGISTERS, PluginManager, builtins_for

from .servers.threaded import accept_in_thread, blocking_tls_server

#: Runs the CLI like the console script, then writes the imported modules'
#: names to the file named by the first argument when the process exits.
RUN_AND_LIST_MODULES = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from anyprobe._cli import main
main(sys.argv[2:])
"""

PLUGIN_MODULES = {
    "http": ("anyprobe.plugins.http", "anyprobe.plugins._http_"),
    "dns": ("anyprobe.plugins.dns", "anyprobe.plugins._dns_", "dns"),
    "ssh": ("anyprobe.plugins.ssh", "anyprobe.plugins._ssh_", "asyncssh"),
}


def modules_of_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    listing = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc, set(json.loads(listing.read_text()))


def imported(modules: set[str], plugin: str) -> list[str]:
    """The modules of ``plugin`` (and of the library behind it) in ``modules``."""
    prefixes = PLUGIN_MODULES[plugin]
    return sorted(
        m
        for m in modules
        if any(m == p or m.startswith(p if p.endswith("_") else f"{p}.") for p in prefixes)
    )


def third_party_plugins() -> list[str]:
    import importlib.metadata

    names = {module.rpartition(".")[2] for module in BUILTIN_PLUGINS}
    return [
        ep.name
        for ep in importlib.metadata.entry_points(group="anyprobe")
        if ep.module not in BUILTIN_PLUGINS and ep.name not in names
    ]


def serve_http(client: socket.socket) -> None:
    client.recv(65536)
    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tcp_check_imports_no_http_dns_or_ssh_plugin(tmp_path: Path, backend: str) -> None:
    with accept_in_thread(lambda client: None) as port:
        proc, modules = modules_of_run(
            tmp_path, "check", "--backend", backend, f"tcp://127.0.0.1:{port}"
        )
    assert proc.returncode == 0, proc.stderr
    assert "anyprobe.plugins.tcp" in modules  # the listing is of the run that checked
    for plugin in ("http", "dns", "ssh"):
        assert imported(modules, plugin) == [], plugin
    # Nor what only other reporters, serve or the terminal need.
    assert not {"rich", "prometheus_client", "httpx", "anyprobe._serve_config"} & modules
    if backend == "trio":
        assert "asyncio" not in modules  # the asyncio bridge imports it only when used
    if not third_party_plugins():  # what a third-party plugin imports is its own choice
        # No option set: the tcp probe's and the table's defaults, no model built.
        assert not {m for m in modules if m.partition(".")[0] in ("pydantic", "pydantic_core")}
        assert not {"anyprobe.plugins._tcp_options", "anyprobe._options", "anyprobe.tls"} & modules
        # No third-party plugin installed: found without importlib.metadata.
        assert not {"importlib.metadata", "email", "csv"} & modules


def test_tcp_check_with_an_option_validates_it(tmp_path: Path) -> None:
    with accept_in_thread(lambda client: None) as port:
        proc, modules = modules_of_run(
            tmp_path, "check", "--set", "max_bytes=10", f"tcp://127.0.0.1:{port}"
        )
    assert proc.returncode == 0, proc.stderr
    assert {"pydantic", "anyprobe.plugins._tcp_options"} <= modules
    proc, _ = modules_of_run(tmp_path, "check", "--set", "max_bytes=0", "tcp://127.0.0.1:1")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "max_bytes" in proc.stderr, proc.stderr


#: What a check that sets no HTTP option leaves out: pydantic (and what it
#: imports), the options models.
NO_MODEL = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "anyprobe._options",
    "anyprobe._tls_options",
    "anyprobe._secrets",
    "anyprobe.plugins._http_options",
    "anyprobe.plugins._headers",
)


def packages_in(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are one of ``names`` or inside one."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http_check_imports_no_dns_or_ssh_plugin(tmp_path: Path, backend: str) -> None:
    from anyprobe.plugins._http1 import parser_name

    with accept_in_thread(serve_http) as port:
        proc, modules = modules_of_run(
            tmp_path, "check", "--backend", backend, f"http://127.0.0.1:{port}/"
        )
    assert proc.returncode == 0, proc.stderr
    assert "anyprobe.plugins.http" in modules
    assert imported(modules, "dns") == []
    assert imported(modules, "ssh") == []
    if not third_party_plugins():  # what a third-party plugin imports is its own choice
        # No option set: the http probe's and the table's defaults, no model built.
        assert packages_in(modules, (*NO_MODEL, "importlib.metadata", "email")) == []
    # One HTTP/1.1 parser: h11 only when it is the one that parses.
    parser = parser_name()
    assert parser in modules
    assert ("h11" in modules) is (parser == "h11")


def test_http_check_with_the_h11_parser_imports_h11_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYPROBE_HTTP_PARSER", "h11")
    with accept_in_thread(serve_http) as port:
        proc, modules = modules_of_run(tmp_path, "check", f"http://127.0.0.1:{port}/")
    assert proc.returncode == 0, proc.stderr
    assert "h11" in modules
    assert "httptools" not in modules


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_http_check_with_an_option_validates_it(tmp_path: Path, backend: str) -> None:
    with accept_in_thread(serve_http) as port:
        proc, modules = modules_of_run(
            tmp_path,
            "check",
            "--backend",
            backend,
            "--set",
            "body_contains=ok",
            f"http://127.0.0.1:{port}/",
        )
        assert proc.returncode == 0, proc.stderr
        assert {"pydantic", "anyprobe.plugins._http_options", "anyprobe._tls_options"} <= modules
        for bad, field in (("max_redirects=-1", "max_redirects"), ("tls_min_version=1.9", "1.9")):
            proc, _ = modules_of_run(
                tmp_path, "check", "--backend", backend, "--set", bad, f"http://127.0.0.1:{port}/"
            )
            assert proc.returncode == 3, proc.stderr
            assert proc.stderr.count("\n") == 1 and field in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr


def serve_tls_http(tls: ssl.SSLSocket) -> None:
    tls.recv(65536)
    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_https_check_of_an_untrusted_certificate_with_no_option_needs_no_model(
    tmp_path: Path, backend: str
) -> None:
    """A certificate that fails verification is fetched again, unverified, to
    say what it is: with the defaults, not with a copy of a model."""
    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with blocking_tls_server(context, serve_tls_http) as port:
        proc, modules = modules_of_run(
            tmp_path, "check", "--backend", backend, "--explain", f"https://127.0.0.1:{port}/"
        )
    assert proc.returncode == 2, proc.stderr
    assert "certificate" in proc.stdout, proc.stdout
    assert "unverified certificate: " in proc.stdout, proc.stdout  # fetched again
    if not third_party_plugins():
        assert packages_in(modules, NO_MODEL) == []


def test_tls_helpers_import_no_pydantic_and_tls_options_stays_importable() -> None:
    script = """
import sys
import anyprobe.tls
assert "pydantic" not in sys.modules, "anyprobe.tls imported pydantic"
from anyprobe.tls import TlsOptions
import anyprobe._tls_options
assert TlsOptions is anyprobe.tls.TlsOptions is anyprobe._tls_options.TlsOptions
assert TlsOptions().cert_expiry_warning_days == 21
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout == "ok\n", proc.stderr
    import anyprobe.tls

    with pytest.raises(AttributeError, match="no attribute 'TlsOption'"):
        anyprobe.tls.TlsOption  # noqa: B018


def test_a_reporter_asked_for_is_imported_and_no_other(tmp_path: Path) -> None:
    with accept_in_thread(lambda client: None) as port:
        proc, modules = modules_of_run(tmp_path, "check", "-r", "jsonl", f"tcp://127.0.0.1:{port}")
    assert proc.returncode == 0, proc.stderr
    assert '"status": "ok"' in proc.stdout
    assert "anyprobe.plugins.jsonl" in modules
    assert "anyprobe.plugins.table" not in modules
    assert "anyprobe.plugins.junit" not in modules


def test_unknown_scheme_names_every_installed_scheme(tmp_path: Path) -> None:
    proc, _ = modules_of_run(tmp_path, "check", "htp://127.0.0.1:1/")
    assert proc.returncode == 3
    assert "unknown scheme 'htp'" in proc.stderr
    for scheme in ("dns", "http", "https", "ssh", "tcp", "tls"):
        assert f"{scheme}" in proc.stderr.partition("known:")[2], proc.stderr
    assert "did you mean" in proc.stderr


def test_unknown_reporter_names_every_installed_reporter(tmp_path: Path) -> None:
    proc, _ = modules_of_run(tmp_path, "check", "-r", "jsnol", "tcp://127.0.0.1:1")
    assert proc.returncode == 3
    known = proc.stderr.partition("known:")[2]
    for reporter in ("csv", "jsonl", "junit", "markdown", "nagios", "prometheus", "table"):
        assert reporter in known, proc.stderr


def _registered(module: ModuleType) -> tuple[set[str], set[str]]:
    manager = PluginManager()
    manager.register(module)
    return (
        {scheme for probe in manager.probes.values() for scheme in probe.schemes},
        set(manager.reporters),
    )


@pytest.mark.parametrize("module", BUILTIN_PLUGINS)
def test_builtin_registers_says_what_each_plugin_registers(module: str) -> None:
    import importlib

    short = module.rpartition(".")[2]
    assert short in BUILTIN_REGISTERS, f"add {short} to BUILTIN_REGISTERS in core/_manager.py"
    schemes, reporters = _registered(importlib.import_module(module))
    assert (schemes, reporters) == tuple(set(names) for names in BUILTIN_REGISTERS[short])


def test_manager_loaded_for_tcp_loads_the_rest_when_asked() -> None:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False, schemes={"tcp"}, reporters={"table"})
    assert set(manager.probes) == {"tcp"}
    assert set(manager.reporters) == {"table"}
    assert manager.reporter_type("table") is not None

    assert manager.probe_for_scheme("dns") is not None  # imports the others
    assert {"tcp", "http", "dns", "ssh"} <= set(manager.probes)
    assert manager.reporter_type("junit") is not None


def test_plugins_list_is_complete_and_in_load_order_after_a_partial_load() -> None:
    third_party = ModuleType("third_party")
    manager = PluginManager()
    manager.load_entrypoints(autoload=False, schemes={"http"}, reporters=())
    manager.register(third_party)
    names = [info.name for info in manager.plugins]
    builtin_names = [module.rpartition(".")[2] for module in BUILTIN_PLUGINS]
    assert names == [*builtin_names, "third_party"]
    assert manager.demo_services  # tcp, http, dns and ssh offer demo services


def test_a_builtin_that_does_not_say_what_it_registers_is_always_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(BUILTIN_REGISTERS, "dns")
    needed = builtins_for({"tcp"}, {"table"})
    assert needed == ("anyprobe.plugins.tcp", "anyprobe.plugins.dns", "anyprobe.plugins.table")


def test_version_verbose_names_the_event_loops_available() -> None:
    import importlib.util

    from .cli import anyprobe

    assert anyprobe("--version").stdout.splitlines() == [
        f"anyprobe, version {__import__('anyprobe').__version__}"
    ]
    for args in (("--version", "-v"), ("-v", "--version")):
        proc = anyprobe(*args)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("anyprobe, version ")
        assert any(line.startswith("asyncio: built in") for line in lines)
        for module in ("trio", "uvloop"):
            (line,) = [line for line in lines if line.startswith(f"{module}: ")]
            installed = importlib.util.find_spec(module) is not None
            assert ("not installed" not in line) is installed, line


@pytest.mark.parametrize(
    ("plugin_type", "model"),
    [
        ("anyprobe.plugins.tcp:TcpProbe", "anyprobe.plugins._tcp_options:TcpOptions"),
        ("anyprobe.plugins.table:TableReporter", "anyprobe.plugins._table_options:TableOptions"),
    ],
)
def test_option_defaults_are_the_models_defaults(plugin_type: str, model: str) -> None:
    import importlib

    def load(path: str) -> Any:
        module, _, name = path.partition(":")
        return getattr(importlib.import_module(module), name)

    kind, options_model = load(plugin_type), load(model)
    assert kind.Options is options_model
    built = options_model()
    assert kind.option_defaults == {
        name: getattr(built, name) for name in options_model.model_fields
    }
    for name, value in kind.option_defaults.items():
        assert type(value) is type(getattr(built, name)), name


def test_default_options_answer_as_the_model() -> None:
    from anyprobe._option_defaults import DefaultOptions
    from anyprobe.plugins.tcp import TcpOptions, TcpProbe

    assert TcpProbe.option_defaults is not None
    options: Any = DefaultOptions(TcpProbe, TcpProbe.option_defaults)
    assert options.max_bytes == 4096
    assert isinstance(options, TcpOptions)
    assert options == TcpOptions()
    assert options.model_dump() == TcpOptions().model_dump()
    assert repr(options) == repr(TcpOptions())
    with pytest.raises(ValueError, match="frozen"):
        options.max_bytes = 1
    with pytest.raises(AttributeError):
        options.no_such_option  # noqa: B018


def test_http_defaults_answer_what_the_model_answers() -> None:
    """Every field, computed attribute and method the HTTP probe reads of its
    options: the defaults give the model's own answer."""
    import inspect

    from anyprobe._option_defaults import DefaultOptions
    from anyprobe.plugins._http_options import HttpOptions
    from anyprobe.plugins.http import HttpProbe

    assert HttpProbe.Options is HttpOptions
    defaults = HttpProbe.option_defaults
    assert defaults is not None
    built = HttpOptions()
    fields = set(HttpOptions.model_fields)
    for name in fields:
        assert defaults[name] == getattr(built, name), name
        assert type(defaults[name]) is type(getattr(built, name)), name
    computed = {
        name
        for name, value in vars(HttpOptions).items()
        if isinstance(value, property)
        or (inspect.isfunction(value) and name[0] != "_" and not name.startswith("model_"))
    }
    assert computed == {"needs_body", "secret_values"}  # a new one needs its default too
    extras = set(defaults) - fields
    assert extras == computed | set(HttpOptions.__private_attributes__)
    options: Any = DefaultOptions(HttpProbe, defaults)
    for name in sorted(extras):
        answer = getattr(built, name)
        if callable(answer):
            assert getattr(options, name)() == answer(), name
        else:
            assert getattr(options, name) == answer, name
    assert isinstance(options, HttpOptions)
    assert options == built
    assert options.model_dump() == built.model_dump()


def test_lazy_model_imports_its_model_when_read() -> None:
    import anyprobe

    class Holder:
        Options = anyprobe.lazy_model("anyprobe.plugins._table_options:TableOptions")

    from anyprobe.plugins._table_options import TableOptions

    assert Holder.Options is TableOptions
    assert Holder().Options is TableOptions
    with pytest.raises(ValueError, match="module:Name"):
        anyprobe.lazy_model("no_colon")


def _dist(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text(entry_points)


def test_entry_scan_answers_maybe_for_any_unknown_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyprobe._entry_scan import only_known_entry_points

    def known(name: str, module: str) -> bool:
        return module.startswith("anyprobe.plugins.")

    site = tmp_path / "site"
    _dist(site, "anyprobe", "[console_scripts]\nanyprobe = anyprobe._cli:main\n"
          "[anyprobe]\ntcp = anyprobe.plugins.tcp\n  # a comment\n")  # fmt: skip
    _dist(site, "other", "[other]\nanyprobe = other.anyprobe:plugin\n")
    monkeypatch.setattr(sys, "path", [str(site), str(tmp_path / "missing")])
    assert only_known_entry_points("anyprobe", known)

    _dist(site, "anyprobe_redis", "[anyprobe]\nredis = anyprobe_redis:plugin [extra]\n")
    assert not only_known_entry_points("anyprobe", known)

    (site / "anyprobe_redis-1.0.dist-info" / "entry_points.txt").unlink()
    assert only_known_entry_points("anyprobe", known)
    zipped = tmp_path / "plugins.zip"
    zipped.write_bytes(b"PK")
    monkeypatch.setattr(sys, "path", [str(site), str(zipped)])
    assert not only_known_entry_points("anyprobe", known)


#: main() as the console script calls it (no argv), then how many objects the
#: garbage collector left frozen when the process exits.
RUN_AND_COUNT_FROZEN = """
import atexit, gc, sys
import anyio
atexit.register(lambda: sys.stderr.write(f"frozen={gc.get_freeze_count()}\\n"))
run = anyio.run
def run_and_tell(*args, **kwargs):
    sys.stderr.write(f"collecting={gc.isenabled()}\\n")
    return run(*args, **kwargs)
anyio.run = run_and_tell
from anyprobe._cli import main
sys.argv = ["anyprobe", *sys.argv[1:]]
main() if sys.argv[1] != "--with-argv" else main(sys.argv[2:])
"""


@pytest.mark.parametrize("as_script", [True, False])
def test_the_console_script_leaves_its_objects_to_the_exit(as_script: bool) -> None:
    """Tearing down every module with the collector walking every object costs a
    one-check run nearly as much as its check: the console script freezes them."""
    with accept_in_thread(lambda client: None) as port:
        args = ["check", f"tcp://127.0.0.1:{port}"]
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_AND_COUNT_FROZEN,
                *([] if as_script else ["--with-argv"]),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    frozen = int(proc.stderr.rpartition("frozen=")[2])
    assert (frozen > 1000) is as_script, frozen
    assert "collecting=True" in proc.stderr  # the checks run with the collector on


def test_serve_runs_with_the_collector_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import anyprobe._serve
    from anyprobe import _cli_gc
    from anyprobe._cli import cli

    seen: list[bool] = []
    monkeypatch.setattr(
        anyprobe._serve, "main", lambda *args, **kwargs: seen.append(gc.isenabled())
    )
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    monkeypatch.setattr(_cli_gc, "_managed", False)
    try:
        _cli_gc.hold_collector()
        assert not gc.isenabled()
        cli.main(["--no-plugin-autoload", "serve"], standalone_mode=False)
        assert gc.get_threshold()[0] == _cli_gc.YOUNG_THRESHOLD
    finally:
        _cli_gc.start_collecting()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert seen == [True]
