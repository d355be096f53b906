"""The bad-input corpus: every case the fuzz suite runs through the real CLI.

One entry per case, as data: add a line here to add a case. Each case runs
``python -m anyprobe ARGS`` in a subprocess, in a fresh directory, under a
hard time limit (see :mod:`tests.fuzz.runner`). In ``args``, ``files`` and
``stdin``, ``{tmp}`` is that directory and ``{port}`` the port of a loopback
listener that counts the connections it gets (the *sentinel*).

``expect`` says what must happen:

- ``bad`` (the default): exit 3, nothing on stdout, exactly one line on
  stderr (no raw control character in it, each of ``says`` in it: ``a|b``
  means either), no traceback, and no connection to the sentinel: bad input
  is refused before anything runs.
- ``ok``: exit 0, no traceback, and each of ``then`` holds afterwards.
- ``ok_or_bad``: either of the two.
- ``refused``: for ``serve`` cases with a ``request``: the server answers the
  request (a path and query) with ``status``, and the sentinel got no
  connection.

``then`` conditions, on files under ``{tmp}``: ``symlink:NAME`` (still a
symbolic link), ``fifo:NAME`` (still a FIFO, and what was written to it
contains ``<``), ``chardev:NAME`` (still a character device), ``mode:NAME=644``,
``changed:NAME`` (no longer its original content), ``stdout-escaped`` (no raw
control character but newlines and tabs on stdout).

``files`` values: text or bytes (the file's content), or a dict:
``{"symlink": "other"}``, ``{"fifo": True}``, ``{"device": "null"}`` (a
character device like /dev/null, made with mknod: needs root),
``{"content": "...", "mode": 0o644}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expect: str = "bad"
    says: tuple[str, ...] = ()
    files: dict[str, Any] = field(default_factory=dict)
    stdin: str | bytes | None = None
    then: tuple[str, ...] = ()
    request: str | None = None
    status: int = 400


DEEP = 5000
TCP = "tcp://127.0.0.1:{port}"
HTTP = "http://127.0.0.1:{port}/"
SSH = "ssh://deploy@127.0.0.1:{port}"
SERVE_NUL_CONFIG = """\
[serve]
allow_targets = ["*.example.com"]

[module.tcp]
probe = "tcp"
timeout = 2

[module.http]
probe = "http"
timeout = 2
"""
GOOD_CONFIG = '[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{port}"\n'
SILENT_REPORTER = ["-r", "jsonl={tmp}/results.jsonl"]


def c(id: str, *args: str, **kwargs: Any) -> Case:
    return Case(id=id, args=args, **kwargs)


CASES: list[Case] = [
    # -- targets: control characters, hosts that can never resolve, bad IDN --------------
    c("target-nul-in-targets-file", "check", "-i", "{tmp}/t.txt", "-t", "2",
      files={"t.txt": "tcp://127.0.0.1\x00.example.com:{port}\n"}, says=("t.txt",)),
    c("target-nul-on-stdin", "check", "-i", "-", "-t", "2",
      stdin="tcp://127.0.0.1\x00.example.com:{port}\n"),
    c("target-nul-in-config-url", "run", "{tmp}/c.toml", "-t", "2",
      files={"c.toml": '[[check]]\nurl = "tcp://127.0.0.1\\u0000.example.com:{port}"\n'},
      says=("c.toml",)),
    c("target-nul-percent-encoded", "check", "tcp://127.0.0.1%00.example.com:{port}", "-t", "2"),
    c("target-nul-percent-encoded-http", "check", "http://127.0.0.1%00.example.com:{port}/",
      "-t", "2"),
    c("target-esc-in-host", "check", "tcp://127.0.0.1\x1b[31m.example.com:{port}", "-t", "2"),
    c("target-esc-in-path", "check", "http://127.0.0.1:{port}/\x1b]0;title\x07", "-t", "2"),
    c("target-cr-in-path", "check", "http://127.0.0.1:{port}/a\rb", "-t", "2"),
    c("target-del-in-query", "check", "http://127.0.0.1:{port}/?q=\x7f", "-t", "2"),
    c("target-control-in-dns-name", "check", "dns://127.0.0.1:{port}/exa\x01mple.com", "-t", "2"),
    c("target-control-in-ssh-user", "check", "ssh://de\x01ploy@127.0.0.1:{port}", "-t", "2"),
    c("target-percent-host", "check", "http://%/", "-t", "2"),
    c("target-percent-encoded-host", "check", "http://127%2e0.0.1:{port}/", "-t", "2"),
    c("target-bad-ipv6-literal", "check", "http://[v1.x]:1/", "-t", "2"),
    c("target-name-over-253", "check", "http://" + "a" * 60 + (".a" + "b" * 58) * 4 + "/",
      "-t", "2"),
    c("target-label-over-63", "check", "http://" + "a" * 64 + ".invalid/", "-t", "2"),
    c("target-idn-snowman", "check", "http://\u2603.invalid/", "-t", "2"),
    c("target-idn-zero-width-space", "check", "http://a\u200bb.invalid/", "-t", "2"),
    c("target-idn-right-to-left-mark", "check", "http://a\u200fb.invalid/", "-t", "2"),
    c("target-idn-in-tcp", "check", "tcp://\u2603.invalid:1", "-t", "2"),
    # -- --set values ----------------------------------------------------------------------
    c("set-nested-list-deep", "check", TCP, "--set", "expect=" + "[" * DEEP, says=("--set",)),
    c("set-nested-table-deep", "check", TCP, "--set", "expect=" + "{a=" * DEEP,
      says=("--set",)),
    c("set-nested-closed-list-deep", "check", TCP,
      "--set", "warning_after=" + "[" * DEEP + "]" * DEEP, says=("--set",)),
    c("set-integer-5000-digits", "check", TCP, "--set", "warning_after=" + "9" * DEEP,
      says=("warning_after",)),
    c("set-json-body-nan", "check", "-t", "2", HTTP, "--set", "json_body=nan", says=("json_body",)),
    c("set-json-body-inf", "check", "-t", "2", HTTP, "--set", "json_body=[1, inf]",
      says=("json_body",)),
    c("set-json-assertions-deep", "check", HTTP,
      "--set", "json_assertions=" + "(" * DEEP + "a" + ")" * DEEP, says=("json_assertions",)),
    c("set-json-assertions-deep-list", "check", HTTP,
      "--set", "json_assertions=" + "[" * DEEP + "a" + "]" * DEEP, says=("json_assertions",)),
    c("set-helo-name-crlf", "check", "-t", "2", TCP, "--set", "starttls=smtp",
      "--set", "helo_name=x\r\nRCPT TO:<a@example.com>", says=("helo_name",)),
    c("set-helo-name-lf", "check", "-t", "2", TCP, "--set", "starttls=smtp",
      "--set", "helo_name=x\nQUIT", says=("helo_name",)),
    c("set-ssh-key-file-missing", "check", SSH, "--set", "key_file={tmp}/missing-key",
      says=("key_file",)),
    c("set-ssh-known-hosts-missing", "check", SSH, "--set", "known_hosts={tmp}/missing-hosts",
      says=("known_hosts",)),
    c("set-ssh-host-key-algorithms-bogus", "check", "-t", "2", SSH,
      "--set", 'host_key_algorithms=["bogus"]', says=("host_key_algorithms",)),
    c("set-http-ca-file-not-pem", "check", "https://127.0.0.1:{port}/",
      "--set", "ca_file={tmp}/not.pem", files={"not.pem": "hello\n"}, says=("ca_file",)),
    c("set-http-ca-file-missing", "check", "https://127.0.0.1:{port}/",
      "--set", "ca_file={tmp}/missing.pem", says=("ca_file",)),
    c("set-dns-resolv-conf-missing", "check", "dns://example.com?type=A",
      "--set", "resolv_conf={tmp}/missing.conf", says=("resolv_conf",)),
    # h11 refuses such a header value only after connecting
    c("set-http-bearer-token-empty", "check", HTTP, "--set", "bearer_token=",
      says=("bearer_token",)),
    c("set-http-bearer-token-trailing-space", "check", HTTP, "--set", "bearer_token=abc ",
      says=("bearer_token",)),
    c("set-header-env-empty-variable-name", "check", HTTP, "--set", 'header_env={X = ""}',
      says=("header_env",)),
    c("set-without-equals", "check", TCP, "--set", "expect", says=("--set",)),
    c("set-unknown-option", "check", TCP, "--set", "nonsense=1", says=("nonsense",)),
    # -- rdap: targets, options and bootstrap files ------------------------------------------
    c("rdap-target-with-port", "check", "rdap://example.test:{port}", says=("port",)),
    c("rdap-target-ip-address", "check", "rdap://127.0.0.1", says=("IP address",)),
    c("rdap-server-crlf", "check", "rdap://example.test",
      "--set", "rdap_server=http://127.0.0.1:{port}/\r\nX-Injected: 1", says=("rdap_server",)),
    c("rdap-server-not-http", "check", "rdap://example.test",
      "--set", "rdap_server=file:///etc/passwd", says=("rdap_server",)),
    c("rdap-bootstrap-file-not-json", "check", "rdap://example.test",
      "--set", "bootstrap_file={tmp}/dns.json", files={"dns.json": "{"},
      says=("bootstrap_file",)),
    c("rdap-bootstrap-file-nested-deep", "check", "rdap://example.test",
      "--set", "bootstrap_file={tmp}/dns.json", files={"dns.json": "[" * DEEP * 4},
      says=("bootstrap_file",)),
    c("rdap-bootstrap-file-fifo", "check", "rdap://example.test",
      "--set", "bootstrap_file={tmp}/pipe", files={"pipe": {"fifo": True}},
      says=("bootstrap_file", "not a regular file")),
    c("rdap-bootstrap-file-missing", "check", "rdap://example.test",
      "--set", "bootstrap_file={tmp}/missing.json", says=("bootstrap_file",)),
    c("rdap-bootstrap-url-and-file", "check", "rdap://example.test",
      "--set", "bootstrap_url=http://127.0.0.1:{port}/dns.json",
      "--set", "bootstrap_file={tmp}/dns.json",
      files={"dns.json": '{"services": []}'}, says=("bootstrap_file or bootstrap_url",)),
    # -- configs ---------------------------------------------------------------------------
    c("config-retries-true", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "retries = true\n"}, says=("c.toml", "retries")),
    c("config-store-buffer-true", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": GOOD_CONFIG + "interval = 30\n[store]\nbuffer = true\n"},
      says=("c.toml", "buffer")),
    c("config-store-not-a-database", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": GOOD_CONFIG + 'interval = 30\n[store]\nurl = "sqlite:junk.db"\n',
             "junk.db": "not a database\n" * 200}, says=("c.toml", "not a database")),
    c("config-nested-list-deep", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "expect = " + "[" * DEEP + "]" * DEEP + "\n"},
      says=("c.toml",)),
    c("config-nested-table-deep", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "expect = " + "{a=" * DEEP + "1" + "}" * DEEP + "\n"},
      says=("c.toml",)),
    c("config-nested-unclosed-deep", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "expect = " + "[" * DEEP + "\n"}, says=("c.toml",)),
    c("config-integer-5000-digits", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "warning_after = " + "9" * DEEP + "\n"},
      says=("c.toml",)),
    c("config-defaults-bad-timeout-overridden-by-flag", "run", "{tmp}/c.toml", "-t", "1",
      files={"c.toml": "[defaults]\ntimeout = -1\n\n" + GOOD_CONFIG}, says=("timeout",)),
    c("config-defaults-bad-concurrency-overridden-by-flag", "run", "{tmp}/c.toml", "-c", "5",
      files={"c.toml": "[defaults]\nconcurrency = 0\n\n" + GOOD_CONFIG},
      says=("concurrency",)),
    c("config-defaults-bad-retries-overridden-by-flag", "run", "{tmp}/c.toml", "--retries", "1",
      files={"c.toml": '[defaults]\nretries = "many"\n\n' + GOOD_CONFIG}, says=("retries",)),
    c("config-json-assertions-deep", "run", "{tmp}/c.toml",
      files={"c.toml": '[[check]]\nurl = "http://127.0.0.1:{port}/"\njson_assertions = ["'
             + "(" * DEEP + "a" + ")" * DEEP + '"]\n'}, says=("json_assertions",)),
    c("config-json-body-nan", "run", "{tmp}/c.toml", "-t", "2",
      files={"c.toml": '[[check]]\nurl = "http://127.0.0.1:{port}/"\njson_body = nan\n'},
      says=("json_body",)),
    c("config-helo-name-crlf", "run", "{tmp}/c.toml", "-t", "2",
      files={"c.toml": GOOD_CONFIG + 'starttls = "smtp"\nhelo_name = "x\\r\\nQUIT"\n'},
      says=("helo_name",)),
    c("config-webhook-template-huge-width", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + '\n[[reporter]]\ntype = "webhook"\n'
             'url = "http://127.0.0.1:{port}/"\ntemplate = "{name:>99999999999}"\n'},
      says=("template",)),
    # a template reaching attributes would read the interpreter's internals (os.environ...)
    c("config-webhook-template-attribute", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + '\n[[reporter]]\ntype = "webhook"\n'
             'url = "http://127.0.0.1:{port}/"\n'
             'template = "{labels.__missing__.__globals__}"\n'}, says=("template",)),
    c("report-webhook-template-index-then-attribute", "check", TCP, "-r",
      "webhook:url=http://127.0.0.1:{port}/,template={labels[x].__class__}", says=("template",)),
    c("config-ssh-host-key-algorithms-bogus", "run", "{tmp}/c.toml", "-t", "2",
      files={"c.toml": '[[check]]\nurl = "ssh://deploy@127.0.0.1:{port}"\n'
             'host_key_algorithms = ["bogus"]\n'}, says=("host_key_algorithms",)),
    c("config-raw-nul-byte", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG.replace("db", "d\x00b")}, says=("c.toml",)),
    c("config-raw-esc-byte", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + "\x1b[2J = 1\n"}, says=("c.toml",)),
    c("config-not-utf8", "run", "{tmp}/c.toml", files={"c.toml": b"[[check]]\nurl = \"\xff\"\n"},
      says=("c.toml",)),
    c("config-missing", "run", "{tmp}/missing.toml", says=("missing.toml",)),
    c("config-utf8-bom-is-accepted", "run", "{tmp}/c.toml", *SILENT_REPORTER,
      files={"c.toml": "\ufeff" + GOOD_CONFIG}, expect="ok"),
    c("config-from-stdin-runs-or-says-it-cannot", "run", "-", *SILENT_REPORTER,
      stdin=GOOD_CONFIG, expect="ok_or_bad"),
    c("config-escape-in-name-is-escaped-in-table", "run", "{tmp}/c.toml",
      files={"c.toml": '[[check]]\nname = "\\u001b[2Jdb\\u0007"\nurl = "tcp://127.0.0.1:{port}"\n'},
      expect="ok", then=("stdout-escaped",)),
    # -- target files ------------------------------------------------------------------------
    c("file-dev-zero", "check", "-i", "/dev/zero", says=("/dev/zero",)),
    c("file-one-huge-line", "check", "-i", "{tmp}/t.txt",
      files={"t.txt": "tcp://127.0.0.1:{port}/" + "a" * 20_000_000 + "\n"}, says=("t.txt",)),
    c("file-utf8-bom-is-accepted", "check", "-i", "{tmp}/t.txt",
      files={"t.txt": "\ufefftcp://127.0.0.1:{port}\n"}, expect="ok"),
    c("file-tab-before-comment-is-accepted", "check", "-i", "{tmp}/t.txt",
      files={"t.txt": "tcp://127.0.0.1:{port}\t# the database\n"}, expect="ok"),
    c("file-escape-sequence-in-target", "check", "-i", "{tmp}/t.txt",
      files={"t.txt": "tcp://127.0.0.1:{port}/\x1b]0;title\x07\n"}, says=("t.txt",)),
    c("file-not-utf8", "check", "-i", "{tmp}/t.txt", files={"t.txt": b"tcp://\xff:1\n"},
      says=("t.txt",)),
    c("file-missing", "check", "-i", "{tmp}/missing.txt", says=("missing.txt",)),
    c("file-is-a-directory", "check", "-i", "{tmp}", says=("{tmp}",)),
    # -- CLI flags ---------------------------------------------------------------------------
    c("flag-timeout-nan", "check", TCP, "-t", "nan", says=("-t|--timeout",)),
    c("flag-timeout-inf", "check", TCP, "-t", "inf", says=("-t|--timeout",)),
    c("flag-timeout-negative", "check", TCP, "-t", "-1", says=("-t|--timeout",)),
    c("flag-timeout-nan-run", "run", "{tmp}/c.toml", "-t", "NaN", files={"c.toml": GOOD_CONFIG},
      says=("-t|--timeout",)),
    c("flag-reporter-timeout-nan", "check", TCP, "--reporter-timeout", "nan",
      says=("--reporter-timeout",)),
    c("flag-reporter-timeout-inf", "check", TCP, "--reporter-timeout", "inf",
      says=("--reporter-timeout",)),
    c("flag-concurrency-zero", "check", TCP, "-c", "0", says=("-c|--concurrency",)),
    c("flag-per-host-zero", "check", TCP, "--per-host", "0", says=("--per-host",)),
    c("flag-retries-over-limit", "check", TCP, "--retries", "11", says=("--retries",)),
    c("flag-shard-out-of-range", "check", TCP, "--shard", "4/4", says=("--shard",)),
    c("flag-shard-not-a-fraction", "check", TCP, "--shard", "x", says=("--shard",)),
    c("flag-shard-arabic-indic-digits", "check", TCP, "--shard", "\u0660/\u0662",
      says=("--shard",)),
    c("flag-shard-underscore-digits", "check", TCP, "--shard", "0_0/2", says=("--shard",)),
    c("flag-shard-plus-sign", "check", TCP, "--shard", "+0/2", says=("--shard",)),
    c("flag-backend-unknown", "check", TCP, "--backend", "tokio", says=("--backend",)),
    c("flag-unknown", "check", TCP, "--nope", says=("--nope",)),
    c("flag-no-target", "check"),
    # -- serve flags and config ---------------------------------------------------------------
    c("serve-grace-nan", "serve", "--listen", "127.0.0.1:0", "--grace", "nan", says=("--grace",)),
    c("serve-grace-inf", "serve", "--listen", "127.0.0.1:0", "--grace", "inf", says=("--grace",)),
    c("serve-timeout-offset-nan", "serve", "--listen", "127.0.0.1:0", "--timeout-offset", "nan",
      says=("--timeout-offset",)),
    c("serve-timeout-offset-inf", "serve", "--listen", "127.0.0.1:0", "--timeout-offset", "inf",
      says=("--timeout-offset",)),
    c("serve-listen-port-out-of-range", "serve", "--listen", "127.0.0.1:99999",
      says=("--listen",)),
    c("serve-allow-target-bracket-flag", "serve", "--listen", "127.0.0.1:0",
      "--allow-target", "[", says=("--allow-target",)),
    c("serve-allow-targets-bracket-config", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": "[serve]\nallow_targets = ['[']\n"}, says=("allow_targets",)),
    c("serve-config-nested-deep", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": "[module.m]\nprobe = 'tcp'\nexpect = " + "[" * DEEP + "]" * DEEP + "\n"},
      says=("c.toml",)),
    c("serve-module-json-assertions-deep", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": "[module.m]\nprobe = 'http'\njson_assertions = ['"
             + "(" * DEEP + "a" + ")" * DEEP + "']\n"}, says=("json_assertions",)),
    # issue 13: a NUL byte in /probe?target= must not pass a name allow-list.
    c("serve-probe-nul-in-target-host", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": SERVE_NUL_CONFIG}, expect="refused",
      request="/probe?module=tcp&target=tcp://127.0.0.1%2500.example.com:{port}"),
    c("serve-probe-nul-in-target-host-raw", "serve", "{tmp}/c.toml", "--listen", "127.0.0.1:0",
      files={"c.toml": SERVE_NUL_CONFIG}, expect="refused",
      request="/probe?module=tcp&target=tcp://127.0.0.1%00.example.com:{port}"),
    c("serve-probe-nul-in-http-target-with-hostname", "serve", "{tmp}/c.toml",
      "--listen", "127.0.0.1:0", files={"c.toml": SERVE_NUL_CONFIG}, expect="refused",
      request="/probe?module=http&hostname=www.example.com"
      "&target=http://127.0.0.1%00.example.com:{port}/"),
    # -- report paths --------------------------------------------------------------------------
    c("report-directory-missing", "check", TCP, "-r", "junit={tmp}/missing/out.xml",
      says=("{tmp}/missing/out.xml",)),
    c("report-path-is-a-directory", "check", TCP, "-r", "junit={tmp}", says=("{tmp}",)),
    c("report-parent-is-a-file", "check", TCP, "-r", "prometheus={tmp}/f.txt/out.prom",
      files={"f.txt": "x"}, says=("{tmp}/f.txt/out.prom",)),
    c("report-jsonl-empty-dest", "check", TCP, "-r", "jsonl=", says=("jsonl",)),
    c("report-csv-empty-dest", "check", TCP, "-r", "csv=", says=("csv",)),
    c("report-unknown-reporter", "check", TCP, "-r", "nope=x", says=("nope",)),
    c("report-config-path-directory-missing", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + '\n[[reporter]]\ntype = "junit"\n'
             'path = "{tmp}/missing/out.xml"\n'}, says=("{tmp}/missing/out.xml",)),
    # a report written over the file the checks are read from would destroy it
    c("report-over-the-config-file", "run", "{tmp}/c.toml", "-r", "jsonl={tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG}, says=("c.toml",)),
    c("report-over-the-config-file-through-a-symlink", "run", "{tmp}/link.toml",
      "-r", "junit={tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG, "link.toml": {"symlink": "c.toml"}}, says=("c.toml",)),
    c("report-config-reporter-over-its-own-config", "run", "{tmp}/c.toml",
      files={"c.toml": GOOD_CONFIG + '\n[[reporter]]\ntype = "markdown"\n'
             'path = "{tmp}/c.toml"\nappend = true\n'}, says=("c.toml",)),
    c("report-over-the-targets-file", "check", "-i", "{tmp}/t.txt", "-r", "csv={tmp}/t.txt",
      files={"t.txt": "tcp://127.0.0.1:{port}\n"}, says=("t.txt",)),
    c("report-symlink-is-written-through", "check", TCP, "-r", "prometheus={tmp}/link.prom",
      files={"real.prom": "old\n", "link.prom": {"symlink": "real.prom"}}, expect="ok",
      then=("symlink:link.prom", "changed:real.prom")),
    c("report-fifo-is-written-through", "check", TCP, "-r", "junit={tmp}/pipe.xml",
      files={"pipe.xml": {"fifo": True}}, expect="ok", then=("fifo:pipe.xml",)),
    c("report-device-is-written-through", "check", TCP, "-r", "prometheus={tmp}/null",
      files={"null": {"device": "null"}}, expect="ok", then=("chardev:null",)),
    c("report-existing-file-keeps-its-mode", "check", TCP, "-r", "junit={tmp}/out.xml",
      files={"out.xml": {"content": "old\n", "mode": 0o644}}, expect="ok",
      then=("mode:out.xml=644", "changed:out.xml")),
    c("report-new-file-follows-the-umask", "check", TCP, "-r", "prometheus={tmp}/new.prom",
      expect="ok", then=("mode:new.prom=644",)),
]  # fmt: skip
