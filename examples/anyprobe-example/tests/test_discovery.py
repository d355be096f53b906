"""The installed package, seen from outside: entry points, `anyprobe plugins`, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable

from anyprobe.testing import CLOSE, LineServer, run_cli


def test_plugins_lists_both_plugins_with_package_version_and_options() -> None:
    proc = run_cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    memcached, tap = plugins["memcached"], plugins["tap"]
    for plugin in (memcached, tap):
        assert (plugin["package"], plugin["version"], plugin["status"]) == (
            "anyprobe-example",
            "0.1.0",
            "ok",
        )
    probe = memcached["probes"][0]
    assert probe["schemes"] == ["memcached"]
    options = {o["name"]: o for o in probe["options"]}
    assert options["stats"]["type"] == "bool" and options["stats"]["default"] is True
    assert options["max_connections"]["description"]
    assert tap["reporters"][0]["name"] == "tap"


def test_schema_offers_the_probes_options_to_editors() -> None:
    schema = json.loads(run_cli("schema").stdout)
    variants = schema["properties"]["check"]["items"]["anyOf"]
    memcached = next(v for v in variants if v["title"] == "check with probe memcached")
    assert memcached["properties"]["url"]["pattern"] == "^(memcached)://"
    assert memcached["properties"]["max_connections"]["description"]


def test_the_cli_checks_and_reports_with_the_plugins(
    anyprobe_line_server: Callable[..., LineServer],
) -> None:
    server = anyprobe_line_server({"version": "VERSION 1.6.21", "quit": CLOSE})
    proc = run_cli("check", "-r", "tap", "--set", "stats=false", server.url("memcached"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == f"ok 1 - {server.url('memcached')}: memcached 1.6.21"


def test_the_plugins_can_be_switched_off() -> None:
    proc = run_cli("check", "memcached://127.0.0.1", env={"ANYPROBE_LOAD_PLUGINS": ""})
    assert proc.returncode == 3 and "unknown scheme 'memcached'" in proc.stderr
    proc = run_cli("--no-plugin-autoload", "plugins")
    assert proc.returncode == 0 and "memcached" not in proc.stdout
