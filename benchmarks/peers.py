"""The same local targets checked by anyprobe and by what a user would pick
instead: Debian's monitoring-plugins (check_http, check_curl, check_tcp,
check_dig, check_ssh) and prometheus-blackbox-exporter. Where the verdicts
differ, the table says why.

    python benchmarks/peers.py                      # print the table
    python benchmarks/peers.py --write docs/peers.md

The targets are nginx (HTTP and HTTPS with a private CA), dnsmasq and sshd on
loopback (``local_targets.py``), a closed port and a port whose connects
hang. Every checker gets the same timeout for a case. A monitoring plugin's
exit status is its verdict (0 ok, 1 warning, 2 critical, 3 unknown); the
exporter's is ``probe_success`` (1 ok, 0 critical). anyprobe runs as the
``anyprobe check`` command, one case at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_targets import LocalTargets, free_port, wait_for

PLUGINS = Path("/usr/lib/nagios/plugins")
EXPORTER = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
VERDICTS = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


@dataclass
class Case:
    """One target and how each checker is asked about it ({placeholders} filled in later)."""

    name: str
    anyprobe: list[str]
    plugins: dict[str, list[str]]
    blackbox: tuple[str, str] | None  # (module, target)
    timeout: int = 5
    why: str = ""
    verdicts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def cases() -> list[Case]:
    http = ["-H", "127.0.0.1", "-p", "{nginx}"]
    https = ["-H", "127.0.0.1", "-p", "{tls}", "-S", "--sni"]
    return [
        Case("HTTP 200", ["http://127.0.0.1:{nginx}/"],
             {"check_http": [*http, "-u", "/"], "check_curl": [*http, "-u", "/"]},
             ("http_2xx", "http://127.0.0.1:{nginx}/")),
        Case("HTTP 404", ["http://127.0.0.1:{nginx}/missing"],
             {"check_http": [*http, "-u", "/missing"], "check_curl": [*http, "-u", "/missing"]},
             ("http_2xx", "http://127.0.0.1:{nginx}/missing"),
             why="The monitoring plugins make a 4xx a WARNING (the server answered); anyprobe "
                 "and blackbox_exporter expect 2xx/3xx by default, so a 404 is a failure."),
        Case("HTTP 500", ["http://127.0.0.1:{nginx}/error"],
             {"check_http": [*http, "-u", "/error"], "check_curl": [*http, "-u", "/error"]},
             ("http_2xx", "http://127.0.0.1:{nginx}/error")),
        Case("HTTP 301 to a page that answers 200", ["http://127.0.0.1:{nginx}/redirect"],
             {"check_http": [*http, "-u", "/redirect"], "check_curl": [*http, "-u", "/redirect"]},
             ("http_2xx", "http://127.0.0.1:{nginx}/redirect"),
             why="All agree the check passes, for different reasons: the plugins do not "
                 "follow redirects and take a 3xx as OK (-f follow changes that); anyprobe and "
                 "blackbox_exporter follow it and judge the final 200."),
        Case("HTTPS, certificate from a CA the checker is given",
             ["https://127.0.0.1:{tls}/", "--set", "ca_file={ca}"],
             {"check_http": [*https, "-u", "/"],
              "check_curl": [*https, "-u", "/", "-D", "--ca-cert={ca}"]},
             ("https_ca", "https://127.0.0.1:{tls}/")),
        Case("HTTPS, certificate from an unknown CA", ["https://127.0.0.1:{tls}/"],
             {"check_http": [*https, "-u", "/"], "check_curl": [*https, "-u", "/"]},
             ("http_2xx", "https://127.0.0.1:{tls}/"),
             why="check_http never verifies the certificate chain, and check_curl only with "
                 "-D/--verify-cert: both report OK. anyprobe and blackbox_exporter verify by "
                 "default and fail the check (anyprobe's summary names the unknown issuer)."),
        Case("HTTP answer after 3 s, timeout 1 s", ["http://127.0.0.1:{nginx}/slow"],
             {"check_http": [*http, "-u", "/slow"], "check_curl": [*http, "-u", "/slow"]},
             ("http_2xx", "http://127.0.0.1:{nginx}/slow"), timeout=1),
        Case("TCP port open", ["tcp://127.0.0.1:{nginx}"],
             {"check_tcp": ["-H", "127.0.0.1", "-p", "{nginx}"]},
             ("tcp_connect", "127.0.0.1:{nginx}")),
        Case("TCP port closed", ["tcp://127.0.0.1:{closed}"],
             {"check_tcp": ["-H", "127.0.0.1", "-p", "{closed}"]},
             ("tcp_connect", "127.0.0.1:{closed}")),
        Case("TCP connect that never completes, timeout 1 s", ["tcp://127.0.0.1:{blackhole}"],
             {"check_tcp": ["-H", "127.0.0.1", "-p", "{blackhole}"]},
             ("tcp_connect", "127.0.0.1:{blackhole}"), timeout=1),
        Case("DNS A www.example.test = 127.0.0.1",
             ["dns://127.0.0.1:{dns}/www.example.test?type=A", "--set",
              'expect_answers=["127.0.0.1"]'],
             {"check_dig": ["-H", "127.0.0.1", "-p", "{dns}", "-l", "www.example.test",
                            "-a", "127.0.0.1"]},
             ("dns_a", "127.0.0.1:{dns}")),
        Case("DNS A of a name that does not exist (NXDOMAIN)",
             ["dns://127.0.0.1:{dns}/missing.example.test?type=A"],
             {"check_dig": ["-H", "127.0.0.1", "-p", "{dns}", "-l", "missing.example.test"]},
             ("dns_missing", "127.0.0.1:{dns}"),
),
        Case("SSH server banner and handshake",
             ["ssh://127.0.0.1:{sshd}", "--set", "verify_host_key=false"],
             {"check_ssh": ["-H", "127.0.0.1", "-p", "{sshd}"]},
             ("ssh_banner", "127.0.0.1:{sshd}")),
        Case("SSH port closed", ["ssh://127.0.0.1:{closed}", "--set", "verify_host_key=false"],
             {"check_ssh": ["-H", "127.0.0.1", "-p", "{closed}"]},
             ("ssh_banner", "127.0.0.1:{closed}")),
    ]  # fmt: skip


BLACKBOX_CONFIG = """
modules:
  http_2xx:
    prober: http
    http: {{preferred_ip_protocol: ip4}}
  https_ca:
    prober: http
    http:
      preferred_ip_protocol: ip4
      tls_config: {{ca_file: "{ca}"}}
  tcp_connect:
    prober: tcp
    tcp: {{preferred_ip_protocol: ip4}}
  ssh_banner:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
      query_response: [{{expect: "^SSH-2.0-"}}]
  dns_a:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: udp
      query_name: www.example.test
      query_type: A
      validate_answer_rrs:
        fail_if_not_matches_regexp:
          ["www\\\\.example\\\\.test\\\\.\\\\s+\\\\d+\\\\s+IN\\\\s+A\\\\s+127\\\\.0\\\\.0\\\\.1"]
  dns_missing:
    prober: dns
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: udp
      query_name: missing.example.test
      query_type: A
"""


def fill(parts: list[str], values: dict[str, Any]) -> list[str]:
    return [part.format(**values) for part in parts]


def run_anyprobe(case: Case, values: dict[str, Any], tmp: Path) -> tuple[str, str]:
    out = tmp / "anyprobe.jsonl"
    args = fill(case.anyprobe, values)
    subprocess.run(
        [sys.executable, "-m", "anyprobe", "check", "--no-progress", "-t", str(case.timeout),
         "-r", f"jsonl={out}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    record = json.loads(out.read_text().splitlines()[0])
    return record["status"], record["summary"]


def run_plugin(plugin: str, args: list[str], timeout: int) -> tuple[str, str]:
    path = PLUGINS / plugin
    if not path.exists():
        return "not installed", ""
    proc = subprocess.run(
        [str(path), "-t", str(timeout), *args], capture_output=True, text=True, timeout=60
    )
    text = (proc.stdout or proc.stderr).strip().splitlines()
    first = text[0].split("|")[0].strip() if text else ""
    if proc.returncode not in VERDICTS:
        return f"exit {proc.returncode}", first
    return VERDICTS[proc.returncode], first


class Blackbox:
    """blackbox_exporter on a loopback port with this benchmark's modules."""

    def __init__(self, directory: Path, ca: str) -> None:
        config = directory / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG.format(ca=ca))
        self.port = free_port()
        self.process = subprocess.Popen(
            [EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.port, self.process, "blackbox_exporter")

    def probe(self, module: str, target: str, timeout: int) -> tuple[str, str]:
        query = urllib.parse.urlencode({"module": module, "target": target})
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/probe?{query}",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": str(timeout + 0.5)},
        )
        with urllib.request.urlopen(request, timeout=timeout + 30) as answer:
            text = answer.read().decode()
        success = next(
            line.split()[1] for line in text.splitlines() if line.startswith("probe_success ")
        )
        duration = next(
            (float(line.split()[1]) for line in text.splitlines()
             if line.startswith("probe_duration_seconds ")), 0.0,
        )  # fmt: skip
        return (
            "ok" if success == "1" else "critical"
        ), f"probe_success {success} in {duration:.3f} s"

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


def compare(targets: LocalTargets) -> list[Case]:
    values = {
        "nginx": targets.nginx_port, "tls": targets.tls_port, "dns": targets.dns_port,
        "sshd": targets.sshd_port, "closed": targets.closed_port,
        "blackhole": targets.blackhole_port, "ca": targets.ca_file,
    }  # fmt: skip
    blackbox = Blackbox(targets.dir, targets.ca_file) if os.path.exists(EXPORTER) else None
    try:
        checked = []
        for case in cases():
            case.verdicts["anyprobe"], case.outputs["anyprobe"] = run_anyprobe(
                case, values, targets.dir
            )
            for plugin, args in case.plugins.items():
                case.verdicts[plugin], case.outputs[plugin] = run_plugin(
                    plugin, fill(args, values), case.timeout
                )
            if case.blackbox is not None and blackbox is not None:
                module, target = case.blackbox
                case.verdicts["blackbox"], case.outputs["blackbox"] = blackbox.probe(
                    module, target.format(**values), case.timeout
                )
            checked.append(case)
            print(f"{case.name}: {case.verdicts}", file=sys.stderr, flush=True)
        return checked
    finally:
        if blackbox is not None:
            blackbox.close()


def markdown(checked: list[Case]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:110]

    lines = [
        "| case | anyprobe | check_http / check_curl / check_tcp / check_dig / check_ssh "
        "| blackbox_exporter | same verdict? |",
        "|---|---|---|---|---|",
    ]
    for case in checked:
        plugins = "; ".join(f"{name}: **{case.verdicts[name]}**" for name in case.plugins)
        verdicts = set(case.verdicts.values())
        same = "yes" if len(verdicts) == 1 else "no (see below)"
        lines.append(
            f"| {case.name} | **{case.verdicts['anyprobe']}** | {plugins} "
            f"| **{case.verdicts.get('blackbox', '-')}** | {same} |"
        )
    lines += ["", "What each said:", ""]
    for case in checked:
        lines.append(f"- **{case.name}**")
        for name, output in case.outputs.items():
            lines.append(f"  - {name} ({case.verdicts[name]}): `{cell(output)}`")
    differing = [c for c in checked if len(set(c.verdicts.values())) > 1 or c.why]
    if differing:
        lines += ["", "## Where the verdicts differ (or agree for different reasons), and why", ""]
        for case in differing:
            lines.append(f"- **{case.name}**: {case.why or 'see the outputs above.'}")
    return "\n".join(lines)


PAGE = """# anyprobe and its peers

The same local targets, checked by anyprobe and by the tools a user would
otherwise pick: Debian's [monitoring-plugins](https://www.monitoring-plugins.org/)
(`check_http`, `check_curl`, `check_tcp`, `check_dig`, `check_ssh`, run from
`/usr/lib/nagios/plugins`) and Prometheus'
[blackbox_exporter](https://github.com/prometheus/blackbox_exporter) (Debian's
`prometheus-blackbox-exporter`, one `/probe` request per case). The targets run on
loopback: nginx (HTTP, and HTTPS with a certificate from a private CA), dnsmasq,
OpenSSH's sshd, a closed port, and a port whose connects never complete. Each
checker gets the same timeout for a case (5 s unless the case says otherwise).

Reproduce it with `python benchmarks/peers.py --write docs/peers.md` (it starts
and stops every target and the exporter itself; `check_curl` needs Debian's
`liburiparser1` and `check_dig` needs `dig` from `bind9-dnsutils`: without
them they report an error, not a verdict about the target). Generated on {date}.

## Verdicts

{table}

## Reading the differences

anyprobe follows the monitoring-plugins convention for its statuses (ok,
warning, critical, unknown), but its defaults are the stricter ones of
blackbox_exporter: a certificate is verified, a status outside 2xx/3xx fails,
a DNS answer must be NOERROR. Each default can be relaxed per check
(`verify = false`, `expect_status = [200, 404]`, `expect_rcode = "NXDOMAIN"`).
Where a peer reports `unknown` for a timeout, anyprobe reports `critical` and
names the phase that timed out: a timeout is a verdict about the target, not
a failure of the checker.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--write", metavar="PAGE", help="write the page (docs/peers.md)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    args = parser.parse_args()
    with LocalTargets() as targets:
        checked = compare(targets)
    table = markdown(checked)
    if args.write:
        date = time.strftime("%Y-%m-%d")
        Path(args.write).write_text(PAGE.format(date=date, table=table))
    if args.json:
        print(json.dumps([{"case": c.name, "verdicts": c.verdicts} for c in checked], indent=2))
    else:
        print(table)


if __name__ == "__main__":
    main()
