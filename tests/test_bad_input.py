"""Bad input is one line on stderr and exit status 3, never a traceback, and
never a run: every case here goes through the real CLI in a subprocess.

Also: what the user or a server wrote is shown with its control characters
escaped, and the small conveniences of input files (a byte order mark, a tab
before a comment, a config on stdin).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anyprobe import PluginManager
from anyprobe._targets import build_targets
from tests.cli import anyprobe, assert_one_clear_line
from tests.test_serve import get, running

DEEP = 5000


def config(tmp_path: Path, text: str, name: str = "checks.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def no_raw_controls(text: str) -> None:
    assert not any(ord(c) < 32 and c not in "\n" for c in text), repr(text)


# -- tracebacks that were --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["[" * DEEP + "]" * DEEP, "{a=" * DEEP + "1" + "}" * DEEP, "[{a=[" * 1000],
    ids=["arrays", "tables", "unclosed"],
)
def test_set_value_nested_thousands_deep_is_one_line(value: str) -> None:
    proc = anyprobe("check", "tcp://127.0.0.1:1", "--set", f"x={value}")
    assert_one_clear_line(proc, "--set x=", "nested deeper than 64 levels")


def test_set_key_dotted_thousands_deep_is_one_line() -> None:
    proc = anyprobe("check", "tcp://127.0.0.1:1", "--set", ".".join(["a"] * DEEP) + "=1")
    assert_one_clear_line(proc, "nested deeper than 64 levels")


def test_set_number_of_5000_digits_is_one_line() -> None:
    proc = anyprobe("check", "tcp://127.0.0.1:1", "--set", "warning_after=" + "1" * 5000)
    assert_one_clear_line(proc, "--set warning_after=", "a number longer than")


@pytest.mark.parametrize(
    "value",
    ["[" * DEEP + "]" * DEEP, "{a=" * DEEP + "1" + "}" * DEEP, "1" * 5000],
    ids=["arrays", "tables", "digits"],
)
def test_config_value_nested_thousands_deep_is_one_line(tmp_path: Path, value: str) -> None:
    path = config(tmp_path, f'[[check]]\nurl = "tcp://127.0.0.1:1"\nx = {value}\n')
    proc = anyprobe("run", path)
    assert_one_clear_line(proc, path, "invalid TOML")


def test_json_assertion_nested_thousands_deep_is_one_line() -> None:
    expression = "(" * 3000 + "a" + ")" * 3000
    proc = anyprobe("check", "http://127.0.0.1:1/", "--set", f"json_assertions={expression}")
    assert_one_clear_line(proc, "bad JSON assertion", "nested too deep")


def test_json_assertion_nested_thousands_deep_in_a_serve_module(tmp_path: Path) -> None:
    expression = "(" * 3000 + "a" + ")" * 3000
    path = config(tmp_path, f'[module.deep]\nprobe = "http"\njson_assertions = ["{expression}"]\n')
    proc = anyprobe("serve", path, "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, path, "module deep", "nested too deep")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
def test_timeout_must_be_a_finite_number(value: str) -> None:
    proc = anyprobe("check", "tcp://127.0.0.1:1", "-t", value)
    assert_one_clear_line(proc, "--timeout")


@pytest.mark.parametrize("flag", ["--grace", "--timeout-offset"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_serve_seconds_must_be_finite_numbers(flag: str, value: str) -> None:
    proc = anyprobe("serve", "--listen", "127.0.0.1:0", flag, value)
    assert_one_clear_line(proc, flag, "not a finite number")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_float_options_must_be_finite(value: str) -> None:
    proc = anyprobe("check", "tcp://127.0.0.1:1", "--set", f"warning_after={value}")
    assert_one_clear_line(proc, "warning_after", "finite number")


def test_config_timeout_must_be_finite(tmp_path: Path) -> None:
    path = config(tmp_path, '[defaults]\ntimeout = nan\n[[check]]\nurl = "tcp://127.0.0.1:1"\n')
    assert_one_clear_line(anyprobe("run", path), path, "timeout", "finite number")


@pytest.mark.parametrize("template", ["{name:>99999999999}", "{duration:.99999999f}"])
def test_webhook_template_with_a_huge_width_is_one_line(tmp_path: Path, template: str) -> None:
    path = config(
        tmp_path,
        '[[check]]\nurl = "tcp://127.0.0.1:1"\n[[reporter]]\ntype = "webhook"\n'
        f'url = "http://127.0.0.1:1/"\ntemplate = "{template}"\n',
    )
    assert_one_clear_line(anyprobe("run", path), path, "template", "over 1000")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_targets_from_dev_zero_are_refused_not_read_whole() -> None:
    proc = anyprobe("check", "-i", "/dev/zero")
    assert_one_clear_line(proc, "/dev/zero:1", "line longer than")


def test_targets_on_stdin_with_an_endless_line_are_refused() -> None:
    proc = anyprobe("check", "-i", "-", input="tcp://" + "a" * 200_000)
    assert_one_clear_line(proc, "<stdin>:1", "line longer than")


# -- accepted but wrong ------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "tcp://127.0.0.1\x00.example.com:{port}",
        "tcp://127.0.0.1:{port}\x00",
        "http://127.0.0.1:{port}/a\x00b",
        "http://127.0.0.1:{port}/?q=\x1b[2J",
        "http://us\x07er@127.0.0.1:{port}/",
        "http://user:pa%00ss@127.0.0.1:{port}/",
        "http://us%0d%0aer@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}/#\x7f",
        "http://127.0.0.1:{port}/a\x85b",
    ],
)
def test_control_characters_anywhere_in_a_target_are_refused(
    tmp_path: Path, listening_port: int, target: str
) -> None:
    # From a file: an argument cannot hold a NUL.
    targets = tmp_path / "targets.txt"
    targets.write_text(target.format(port=listening_port) + "\n", encoding="utf-8")
    proc = anyprobe("check", "-i", str(targets))
    line = assert_one_clear_line(proc, f"{targets}:1", "control character")
    no_raw_controls(line)


def test_bytes_that_are_not_utf8_in_a_target_argument_are_refused() -> None:
    # Python reads the byte 0xff of an argument as the lone surrogate U+DCFF.
    proc = anyprobe("check", "tcp://127.0.0.1:1/\udcff")
    assert_one_clear_line(proc, "not UTF-8")


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("http://%/", "percent-encoded"),
        ("http://%31%32%37.0.0.1:1/", "percent-encoded"),
        ("http://[v1.x]:1/", "not an IPv6 address"),
        ("http://[127.0.0.1]:1/", "brackets"),
        ("http://" + "a" * 64 + ".example/", "at most 63"),
        ("http://" + ".".join(["abcdefgh"] * 30) + "/", "at most 253"),
        ("http://a..b/", "empty label"),
        ("http://a!b/", "cannot appear in a host name"),
        ("tcp://☃.invalid:1", "not a valid international domain name"),
        ("tcp://a\u200db.example:1", "not a valid international domain name"),
        ("tcp://a\u200fb.example:1", "a control character (\\u200f)"),
        ("ssh://xn--a\u202eb.example", "a control character (\\u202e)"),
    ],
)
def test_hosts_that_can_never_resolve_are_bad_input(target: str, fragment: str) -> None:
    line = assert_one_clear_line(anyprobe("check", target), fragment)
    no_raw_controls(line)
    assert "\u202e" not in line and "\u200f" not in line


@pytest.mark.parametrize(
    "target",
    [
        "http://bücher.example:1/",
        "http://BÜCHER.example:1/",
        "tcp://_service.example:1",
        "tcp://[::1]:1",
        "tcp://[fe80::1%25eth0]:1",
        "dns://127.0.0.1:1/_dmarc.example.com?type=TXT",
        "dns://example.com?type=MX",
        "http://example.com.:1/",
        "http://user%20name:p%40ss@example.com/",
        "http://example.com/a%00b",
    ],
)
def test_good_unusual_targets_are_still_accepted(manager: PluginManager, target: str) -> None:
    # Validation only (nothing is resolved or connected to).
    [built] = build_targets(manager, [target])
    assert built.url == target


def test_defaults_are_validated_even_when_a_flag_overrides_them(tmp_path: Path) -> None:
    path = config(tmp_path, '[defaults]\ntimeout = -1\n[[check]]\nurl = "tcp://127.0.0.1:1"\n')
    line = assert_one_clear_line(anyprobe("run", path, "-t", "1"), f"{path}:2", "timeout")
    assert "greater than 0" in line


def test_serve_allow_targets_with_an_unclosed_bracket_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, "[serve]\nallow_targets = ['[']\n")
    proc = anyprobe("serve", path, "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, f"{path}:2", "allow_targets")


@pytest.mark.parametrize("helo", ["a\\r\\nRCPT TO:<x>", "mail\\nQUIT", "", "[bogus]"])
def test_helo_name_must_be_a_host_name(helo: str) -> None:
    proc = anyprobe(
        "check", "tcp://127.0.0.1:1", "--set", "starttls=smtp", "--set", f'helo_name="{helo}"'
    )
    line = assert_one_clear_line(proc, "helo_name")
    no_raw_controls(line)


@pytest.mark.parametrize("value", ["nan", "inf", "[1, nan]", "{a = -inf}"])
def test_json_body_must_be_json(value: str) -> None:
    proc = anyprobe("check", "http://127.0.0.1:1/", "--set", f"json_body={value}")
    assert_one_clear_line(proc, "json_body", "not JSON")


@pytest.mark.parametrize(
    ("target", "option", "fragment"),
    [
        ("ssh://127.0.0.1:1", 'key_file="{missing}"', "key_file"),
        ("ssh://127.0.0.1:1", 'known_hosts="{missing}"', "known_hosts"),
        ("ssh://127.0.0.1:1", 'known_hosts="{directory}"', "is not a file"),
        ("ssh://127.0.0.1:1", 'host_key_algorithms=["bogus"]', "unknown host key algorithm"),
        ("ssh://127.0.0.1:1", "host_key_algorithms=[]", "at least one"),
        ("https://127.0.0.1:1/", 'ca_file="{not_pem}"', "not a PEM certificate"),
        ("https://127.0.0.1:1/", 'client_cert="{not_pem}"', "not a PEM certificate"),
        ("tls://127.0.0.1:1", 'ca_file="{not_pem}"', "not a PEM certificate"),
        ("dns://127.0.0.1:1/example.com", 'resolv_conf="{missing}"', "resolv_conf"),
        (
            "http://127.0.0.1:1/",
            'header_env={{X = ""}}',
            "header X: must be the NAME of an environment variable",
        ),
        (
            "http://127.0.0.1:1/",
            'header_env={{X = "ANYPROBE_TEST_SURELY_UNSET"}}',
            "ANYPROBE_TEST_SURELY_UNSET is not set",
        ),
        ("http://127.0.0.1:1/", 'header_env={{X = "ANYPROBE_TEST_EMPTY"}}', "is empty"),
    ],
)
def test_files_algorithms_and_variables_are_checked_before_the_run(
    tmp_path: Path, target: str, option: str, fragment: str
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    value = option.format(missing=tmp_path / "missing", directory=tmp_path, not_pem=not_pem)
    proc = anyprobe("check", target, "--set", value, env={"ANYPROBE_TEST_EMPTY": ""})
    assert_one_clear_line(proc, fragment)


def test_client_key_must_be_a_pem_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    proc = anyprobe(
        "check",
        "https://127.0.0.1:1/",
        "--set",
        f'client_cert="{cert}"',
        "--set",
        f'client_key="{cert}"',
    )
    assert_one_clear_line(proc, "client_key", "not a PEM private key")


# -- safe to print -------------------------------------------------------------------


def test_error_lines_escape_terminal_sequences() -> None:
    proc = anyprobe("check", "tcp://evil\x1b]0;pwned\x07\x1b[2J:1")
    line = assert_one_clear_line(proc, "\\x1b]0;pwned\\x07\\x1b[2J")
    no_raw_controls(line)


def test_config_errors_escape_names_from_the_file(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        '[[check]]\nname = "a\\u001b[31mred"\nurl = "tcp://127.0.0.1:1"\nbogus = 1\n',
    )
    line = assert_one_clear_line(anyprobe("run", path), "\\x1b[31mred", "bogus")
    no_raw_controls(line)


def test_table_escapes_names_and_summaries(tmp_path: Path, closed_port: int) -> None:
    path = config(
        tmp_path,
        f'[[check]]\nname = "evil\\u001b[2J\\u0000\\u202e"\nurl = "tcp://127.0.0.1:{closed_port}"\n',
    )
    proc = anyprobe("run", path)
    assert proc.returncode == 2, proc.stderr
    assert "evil\\x1b[2J\\x00\\u202e" in proc.stdout
    no_raw_controls(proc.stdout)
    assert "\u202e" not in proc.stdout


def test_table_escapes_what_a_server_sent() -> None:
    from anyprobe import Status
    from anyprobe.plugins.table import render_plain, render_rich
    from tests.reporter_samples import make_result

    result = make_result(
        "[bold]x[/bold]", status=Status.CRITICAL, summary="expected '220', got '\x1b[31mhi\r\n'"
    )
    for text in (
        render_plain([result], None, explain=False),
        render_rich([result], None, explain=False),
    ):
        assert "\\x1b[31mhi\\r\\n" in text
        assert "[bold]x[/bold]" in text  # not read as rich markup
        no_raw_controls(text.replace("\x1b[1m", "").replace("\x1b[0m", ""))


# -- small conveniences --------------------------------------------------------------


def test_bom_and_tab_comment_in_a_targets_file(tmp_path: Path, closed_port: int) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_bytes(
        b"\xef\xbb\xbftcp://127.0.0.1:%d\t# first\n# only a comment\n\ttcp://127.0.0.1:%d  #x\n"
        % (closed_port, closed_port + 0)
    )
    proc = anyprobe("check", "-i", str(targets), "-r", "jsonl")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.count('"status": "critical"') == 2


def test_bom_at_the_start_of_a_config(tmp_path: Path, closed_port: int) -> None:
    path = tmp_path / "checks.toml"
    path.write_bytes(b'\xef\xbb\xbf[[check]]\nurl = "tcp://127.0.0.1:%d"\n' % closed_port)
    proc = anyprobe("run", str(path))
    assert proc.returncode == 2, proc.stderr


def test_run_reads_the_config_from_stdin(closed_port: int) -> None:
    proc = anyprobe(
        "run", "-", "-r", "jsonl", input=f'[[check]]\nurl = "tcp://127.0.0.1:{closed_port}"\n'
    )
    assert proc.returncode == 2, proc.stderr
    assert '"status": "critical"' in proc.stdout


def test_config_on_stdin_is_named_stdin_in_errors() -> None:
    proc = anyprobe("run", "-", input='[[check]]\nurl = "tcp://127.0.0.1:1"\nbogus = 1\n')
    assert_one_clear_line(proc, "<stdin>:3", "bogus")


# -- anyprobe serve: /probe?target= goes through the same validation -------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "target", ["127.0.0.1\x00.example.com:1", "%", "[v1.x]:1", "☃.invalid:1", "a\x1b[2Jb:1"]
)
async def test_serve_probe_refuses_bad_targets_with_400(
    anyio_backend: str, manager: PluginManager, target: str
) -> None:
    async with running(manager) as url:
        response = await get(f"{url}/probe", params={"target": target, "module": "tcp_connect"})
    assert response.status_code == 400, response.text
    assert "Bad target" in response.text
    no_raw_controls(response.text.strip())
