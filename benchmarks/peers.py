"""The same local targets checked by anyprobe and by what a user would pick
instead: Debian's monitoring-plugins (check_http, check_curl, check_tcp,
check_dig, check_ssh, check_ping, check_udp, check_ntp_time) and
prometheus-blackbox-exporter (its http, tcp, dns, icmp and grpc probers). Where the verdicts
differ, the table says why.

    python benchmarks/peers.py                      # print the table
    python benchmarks/peers.py --write docs/peers.md

The targets are nginx (HTTP and HTTPS with a private CA), dnsmasq and sshd on
loopback (``local_targets.py``), a closed port and a port whose connects
hang; for the newer probes, the targets of ``more_targets.py``. Every
checker gets the same timeout for a case. A monitoring plugin's
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
from more_targets import MoreTargets

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
        *newer_cases(),
    ]  # fmt: skip


def newer_cases() -> list[Case]:
    """The rows of the newer probes: ICMP, gRPC, WebSocket, UDP and NTP."""
    ping = ["-H", "127.0.0.1", "-w", "100,20%", "-c", "500,60%", "-p", "3"]
    thresholds = (
        "count=3",
        "rtt_warning=0.1",
        "rtt_critical=0.5",
        "loss_warning=20",
        "loss_critical=60",
    )  # check_ping's -w 100,20% -c 500,60% -p 3
    icmp = ["icmp://127.0.0.1", *[part for value in thresholds for part in ("--set", value)]]
    udp = ["-H", "127.0.0.1", "-s", "PING", "-e", "PONG"]
    ntp = ["-H", "127.0.0.1", "-w", "0.5", "-c", "1"]
    return [
        Case("ping 127.0.0.1", icmp, {"check_ping": ping}, ("icmp", "127.0.0.1")),
        Case("ping 127.0.0.1, round trip over a 1 µs warning threshold",
             [*icmp, "--set", "rtt_warning=0.000001"],
             {"check_ping": ["-H", "127.0.0.1", "-w", "0.001,20%", "-c", "500,60%", "-p", "3"]},
             ("icmp", "127.0.0.1"),
             why="blackbox_exporter's icmp prober has no round-trip or loss threshold (an "
                 "alert rule on probe_icmp_duration_seconds does that): the reply came, so "
                 "probe_success is 1. check_ping and anyprobe both warn."),
        Case("gRPC health, server SERVING", ["grpc://127.0.0.1:{grpc}"], {},
             ("grpc_plain", "127.0.0.1:{grpc}"),
             why="The monitoring plugins have no gRPC check (the rows below compare with "
                 "blackbox_exporter's grpc prober only)."),
        Case("gRPC health, service NOT_SERVING", ["grpc://127.0.0.1:{grpc}", "--set",
             "service=down"], {}, ("grpc_down", "127.0.0.1:{grpc}")),
        Case("gRPC health, service the server does not know",
             ["grpc://127.0.0.1:{grpc}", "--set", "service=nope"], {},
             ("grpc_unknown", "127.0.0.1:{grpc}"),
             why="grpcio's servicer answers an unknown service with grpc-status NOT_FOUND; "
                 "both fail the check (anyprobe's summary says NOT_FOUND and the message)."),
        Case("gRPC port closed", ["grpc://127.0.0.1:{closed}"], {},
             ("grpc_plain", "127.0.0.1:{closed}")),
        Case("WebSocket upgrade, send and expect an echo",
             ["ws://127.0.0.1:{ws}/echo", "--set", "send=ping", "--set", "expect=ping"], {},
             ("ws_upgrade", "http://127.0.0.1:{ws}/echo"),
             why="blackbox_exporter 0.23 has no WebSocket prober (its probers are http, tcp, "
                 "dns, icmp and grpc), and the monitoring plugins have no WebSocket check. The "
                 "row asks blackbox's http prober for the upgrade (the WebSocket headers, "
                 "valid_status_codes [101]): after the 101 it reads the answer's body, which "
                 "on an upgraded connection never ends while the server keeps it open, so "
                 "/probe gave no answer at all, long past the 5.5 s scrape timeout it was given. "
             "It can send no "
                 "message either; anyprobe sends one and checks the echo."),
        Case("WebSocket upgrade refused with HTTP 403", ["ws://127.0.0.1:{ws403}/"], {},
             ("ws_upgrade", "http://127.0.0.1:{ws403}/")),
        Case("UDP send PING, expect PONG",
             ["udp://127.0.0.1:{udp}", "--set", "send=PING", "--set", "expect=PONG"],
             {"check_udp": [*udp[:2], "-p", "{udp}", *udp[2:]]}, None,
             why="blackbox_exporter has no UDP prober (only DNS over UDP)."),
        Case("UDP reply without the expected text",
             ["udp://127.0.0.1:{udp}", "--set", "send=PING", "--set", "expect=NOPE"],
             {"check_udp": ["-H", "127.0.0.1", "-p", "{udp}", "-s", "PING", "-e", "NOPE"]}, None,
             why="check_udp makes a reply that does not hold the expected text a WARNING "
                 "(its -M/--mismatch default: warn); anyprobe makes every failed expectation "
                 "critical, as its tcp:// probe does. (anyprobe shows the echoed PING as *** "
                 "because what a check sends is never shown.)"),
        Case("UDP port closed (ICMP port unreachable)",
             ["udp://127.0.0.1:{closed_udp}", "--set", "send=PING", "--set", "expect=PONG"],
             {"check_udp": [*udp[:2], "-p", "{closed_udp}", *udp[2:]]}, None,
             why="Both critical; check_udp says it received nothing, anyprobe reads the "
                 "kernel's ICMP port unreachable and says the port is closed."),
        Case("NTP chronyd, clock in sync", ["ntp://127.0.0.1:{chrony}"],
             {"check_ntp_time": [*ntp, "-p", "{chrony}"]}, None,
             why="blackbox_exporter has no NTP prober."),
        Case("NTP server 3 s ahead", ["ntp://127.0.0.1:{ntp_off}"],
             {"check_ntp_time": [*ntp, "-p", "{ntp_off}"]}, None),
        Case("NTP server at stratum 16 (unsynchronised), clock right",
             ["ntp://127.0.0.1:{ntp16}"], {"check_ntp_time": [*ntp, "-p", "{ntp16}"]}, None,
             why="check_ntp_time 2.3.3 drops replies of stratum 0 and with leap indicator 3, "
                 "but keeps stratum 16 ones: an unsynchronised server whose clock happens to "
                 "be close passes. A stratum 16 server says its time follows no reference; "
                 "no client would use it, and anyprobe calls it critical."),
        Case("NTP port closed", ["ntp://127.0.0.1:{closed_udp}"],
             {"check_ntp_time": [*ntp, "-p", "{closed_udp}"]}, None,
             why="Both critical; anyprobe tells a closed port (ICMP port unreachable) from "
                 "a silent one, check_ntp_time says no response for both."),
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
  icmp:
    prober: icmp
    icmp: {{preferred_ip_protocol: ip4}}
  grpc_plain:
    prober: grpc
    grpc: {{preferred_ip_protocol: ip4, tls: false}}
  grpc_down:
    prober: grpc
    grpc: {{preferred_ip_protocol: ip4, tls: false, service: down}}
  grpc_unknown:
    prober: grpc
    grpc: {{preferred_ip_protocol: ip4, tls: false, service: nope}}
  ws_upgrade:
    prober: http
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [101]
      headers:
        Upgrade: websocket
        Connection: Upgrade
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
        Sec-WebSocket-Version: "13"
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
        try:
            with urllib.request.urlopen(request, timeout=timeout + 30) as answer:
                text = answer.read().decode()
        except TimeoutError:
            return "no answer", f"/probe did not answer within {timeout + 30} s"
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


def compare(targets: LocalTargets, more: MoreTargets) -> list[Case]:
    values = {
        "nginx": targets.nginx_port, "tls": targets.tls_port, "dns": targets.dns_port,
        "sshd": targets.sshd_port, "closed": targets.closed_port,
        "blackhole": targets.blackhole_port, "ca": targets.ca_file, **more.ports,
    }  # fmt: skip
    blackbox = Blackbox(targets.dir, targets.ca_file) if os.path.exists(EXPORTER) else None
    try:
        checked = []
        for case in cases():
            if "chrony" in " ".join(case.anyprobe) and "chrony" not in values:
                continue  # chronyd is not installed
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
        "| case | anyprobe | monitoring plugin | blackbox_exporter | same verdict? |",
        "|---|---|---|---|---|",
    ]

    def shown(verdict: str) -> str:
        return verdict if verdict == "not installed" else f"**{verdict}**"

    for case in checked:
        plugins = "; ".join(f"{name}: {shown(case.verdicts[name])}" for name in case.plugins)
        # A checker missing from the machine says nothing about the target.
        verdicts = {v for v in case.verdicts.values() if v != "not installed"}
        if len(case.verdicts) == 1:
            same = "- (no peer)"
        else:
            same = "yes" if len(verdicts) == 1 else "no (see below)"
        blackbox = case.verdicts.get("blackbox")
        lines.append(
            f"| {case.name} | **{case.verdicts['anyprobe']}** | {plugins or '-'} "
            f"| {'-' if blackbox is None else shown(blackbox)} | {same} |"
        )
    lines += ["", "What each said:", ""]
    for case in checked:
        lines.append(f"- **{case.name}**")
        for name, output in case.outputs.items():
            if case.verdicts[name] == "not installed":
                continue
            lines.append(f"  - {name} ({case.verdicts[name]}): `{cell(output)}`")
    differing = [
        c
        for c in checked
        if len({v for v in c.verdicts.values() if v != "not installed"}) > 1 or c.why
    ]
    if differing:
        lines += ["", "## Where the verdicts differ (or agree for different reasons), and why", ""]
        for case in differing:
            lines.append(f"- **{case.name}**: {case.why or 'see the outputs above.'}")
    return "\n".join(lines)


PAGE = """# anyprobe and its peers

The same local targets, checked by anyprobe and by the tools a user would
otherwise pick: Debian's [monitoring-plugins](https://www.monitoring-plugins.org/)
(`check_http`, `check_curl`, `check_tcp`, `check_dig`, `check_ssh`,
`check_ping`, `check_udp`, `check_ntp_time`, run from
`/usr/lib/nagios/plugins`) and Prometheus'
[blackbox_exporter](https://github.com/prometheus/blackbox_exporter) (Debian's
`prometheus-blackbox-exporter` 0.23, one `/probe` request per case). The targets run on
loopback: nginx (HTTP, and HTTPS with a certificate from a private CA), dnsmasq,
OpenSSH's sshd, a closed port, and a port whose connects never complete; for
the newer probes, 127.0.0.1 itself (ping, run as root), grpcio's health server
(the server SERVING, service `down` NOT_SERVING), a WebSocket echo server and
one that refuses the upgrade (wsproto), a UDP server that answers `PONG` and
the datagram, Debian's chronyd on a loopback port, NTP servers 3 s ahead and at
stratum 16 (anyprobe's scripted demo server), and a closed UDP port
(`benchmarks/more_targets.py`). Each checker gets the same timeout for a case
(5 s unless the case says otherwise); a row with `-` has no such checker
(blackbox_exporter has no UDP or NTP prober, the monitoring plugins no gRPC or
WebSocket check). The RDAP probe has no peer here: see
[its page](probes/rdap.md#compared-with-other-tools).

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
    with LocalTargets() as targets, MoreTargets() as more:
        checked = compare(targets, more)
    table = markdown(checked)
    missing = sorted(
        {name for c in checked for name, v in c.verdicts.items() if v == "not installed"}
    )
    if missing:
        table = (
            f"Not installed on the machine that generated this page: {', '.join(missing)} "
            "(their cells say so; the comparison leaves them out).\n\n" + table
        )
    if args.write:
        date = time.strftime("%Y-%m-%d")
        Path(args.write).write_text(PAGE.format(date=date, table=table))
    if args.json:
        print(json.dumps([{"case": c.name, "verdicts": c.verdicts} for c in checked], indent=2))
    else:
        print(table)


if __name__ == "__main__":
    main()
