"""``anyprobe serve --workers N``: several processes answer /probe on one socket.

Real processes on loopback, started and stopped by PID: the parent and its
workers (found as the parent's children in /proc), every server, both loops.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers.serve import BACKEND_SERVERS, WebTarget

#: Longest a process may take to start or to stop.
PROCESS_LIMIT = 60.0
#: Connections tried, at most, to find one a given process accepted.
CONNECTION_TRIES = 400
PASSWORD = "right-password"
SERVE = [sys.executable, "-m", "anyprobe", "serve"]

pytestmark = pytest.mark.slow


@contextmanager
def serve_workers(
    backend: str, server: str, *args: str, workers: str = "2"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``anyprobe serve --workers N`` on an ephemeral loopback port; yields the
    parent process and its URL once every worker is running."""
    command = [sys.executable, "-m", "anyprobe", "serve", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--backend", backend, "--server", server, "--workers", workers, *args],
        env={**os.environ, "ANYPROBE_LOAD_PLUGINS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[int] = []
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the first line says where it listens
        match = re.search(r"serving on (https?://\S+)", line)
        assert match, line
        wait_for(lambda: len(children_of(process.pid)) == int(workers) - 1)
        children = children_of(process.pid)
        yield process, match.group(1)
    finally:
        children += children_of(process.pid)
        if process.poll() is None:
            process.kill()
        process.wait(PROCESS_LIMIT)
        for pid in children:  # the parent gone, each worker stops by itself
            wait_for(lambda pid=pid: not alive(pid))


def children_of(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads (trio starts a
    process from a worker thread: its child is listed under that thread)."""
    children: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for its reaper, has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: object, what: str = "condition") -> None:
    """Poll ``condition`` (a callable) every 0.05 s, at most PROCESS_LIMIT s in all."""
    event = threading.Event()
    for _ in range(int(PROCESS_LIMIT / 0.05)):
        if condition():  # type: ignore[operator]
            return
        event.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def per_process(metrics: str) -> dict[str, float]:
    """``anyprobe_serve_worker_probes`` by worker (0: the parent)."""
    return {
        match[1]: float(match[2])
        for match in re.finditer(
            r'^anyprobe_serve_worker_probes\{worker="(\d+)"\} (\S+)$', metrics, re.M
        )
    }


def probes_total(metrics: str, module: str) -> float:
    return sum(
        float(match[1])
        for match in re.finditer(
            rf'^anyprobe_probes_total\{{module="{module}",result="\w+"\}} (\S+)$', metrics, re.M
        )
    )


def connection_of(
    url: str, index: str, auth: tuple[str, str] | None = None
) -> tuple[httpx.Client, str]:
    """A keep-alive client whose one connection process ``index`` accepted
    (0: the parent, 1: the first worker), and the probe target it used."""
    counts = per_process(httpx.get(f"{url}/metrics", auth=auth, timeout=30).text)
    for _ in range(CONNECTION_TRIES):
        client = httpx.Client(auth=auth, timeout=30, limits=httpx.Limits(max_connections=1))
        # A /probe on this connection adds one to its process's count.
        client.get(f"{url}/probe", params={"target": "tcp://127.0.0.1:1", "module": "tcp_connect"})
        after = per_process(client.get(f"{url}/metrics").text)
        grown = [key for key, value in after.items() if value > counts.get(key, 0.0)]
        assert len(grown) == 1, (counts, after)
        counts = after
        if grown[0] == index:
            return client, url
        client.close()
    raise AssertionError(f"no connection accepted by process {index}")


def test_bad_workers_value_is_one_line_and_exit_3() -> None:
    for value in ("0", "two", "-1"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "anyprobe",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                value,
            ],
            capture_output=True,
            text=True,
            timeout=PROCESS_LIMIT,
        )
        assert done.returncode == 3
        assert done.stderr.count("\n") == 1
        assert "--workers" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_probes_are_answered_by_every_process_and_metrics_sum_them(
    backend: str, server: str, web_target: WebTarget
) -> None:
    with serve_workers(backend, server) as (_process, url):
        sent = 0
        counts: dict[str, float] = {}
        for _ in range(CONNECTION_TRIES):
            # A new connection each: the kernel gives each to one process.
            response = httpx.get(
                f"{url}/probe",
                params={"target": web_target.url, "module": "http_2xx"},
                headers={"Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200
            assert "probe_success 1.0" in response.text
            sent += 1
            counts = per_process(httpx.get(f"{url}/metrics", timeout=30).text)
            if sent >= 20 and counts.get("0", 0) > 0 and counts.get("1", 0) > 0:
                break
        assert counts["0"] > 0 and counts["1"] > 0, counts
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        # Every probe, whichever process ran it, counted once at the parent.
        assert probes_total(metrics, "http_2xx") == sent
        assert sum(per_process(metrics).values()) == sent
        assert (
            re.search(
                r"^anyprobe_probe_duration_seconds_count\{module=\"http_2xx\"\} (\S+)$",
                metrics,
                re.M,
            )[1]
            == f"{float(sent)}"
        )  # type: ignore[index]
        assert "anyprobe_serve_workers 1.0" in metrics


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_other_endpoints_via_a_worker_are_the_parents(
    backend: str, server: str, tmp_path: Path
) -> None:
    import bcrypt

    web = tmp_path / "web.toml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web.write_text(f'[basic_auth_users]\nprometheus = "{hashed}"\n')
    auth = ("prometheus", PASSWORD)
    with serve_workers(backend, server, "--web-config", str(web)) as (_process, url):
        answers = []
        for index in ("1", "0"):
            client, _ = connection_of(url, index, auth)
            try:
                refused = client.get(f"{url}/-/help", auth=("prometheus", "wrong"))
                wrong = (refused.status_code, refused.text, refused.headers["www-authenticate"])
                metrics = client.get(f"{url}/metrics").text
                # Only the parent's /metrics has its workers' families.
                assert "anyprobe_serve_workers 1.0" in metrics
                help_text = client.get(f"{url}/-/help").text
                api = client.get(f"{url}/api/checks")
                healthy = client.get(f"{url}/-/healthy")
                reload = client.post(f"{url}/-/reload")
                answers.append(
                    (wrong, help_text, api.status_code, api.text, healthy.text, reload.text)
                )
            finally:
                client.close()
        assert answers[0] == answers[1]
        assert answers[0][0][0] == 401
        assert answers[0][-1] == "OK: config reloaded\n"


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_sighup_and_reload_reach_the_workers(backend: str, server: str, tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.first]\nprobe = "tcp"\n')
    with serve_workers(backend, server, str(config)) as (process, url):
        client, _ = connection_of(url, "1")
        try:
            probe = f"{url}/probe"
            target = "tcp://127.0.0.1:1"
            assert (
                client.get(probe, params={"target": target, "module": "first"}).status_code == 200
            )
            assert (
                client.get(probe, params={"target": target, "module": "second"}).status_code == 400
            )
            config.write_text('[module.second]\nprobe = "tcp"\n')
            process.send_signal(signal.SIGHUP)
            wait_for(
                lambda: (
                    client.get(probe, params={"target": target, "module": "second"}).status_code
                    == 200
                ),
                "the worker's reload",
            )
            config.write_text('[module.third]\nprobe = "tcp"\n')
            # /-/reload, sent through the worker's connection, reloads every process.
            assert client.post(f"{url}/-/reload").text == "OK: config reloaded\n"
            assert (
                client.get(probe, params={"target": target, "module": "third"}).status_code == 200
            )
            config.write_text("[module.broken\n")
            failed = client.post(f"{url}/-/reload")
            assert failed.status_code == 500
            assert (
                client.get(probe, params={"target": target, "module": "third"}).status_code == 200
            )
        finally:
            client.close()


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_sigterm_stops_every_process(backend: str, server: str) -> None:
    with serve_workers(backend, server, workers="3") as (process, _url):
        workers = children_of(process.pid)
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
        for pid in workers:
            assert not alive(pid)  # the parent waited for each
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_a_killed_worker_is_started_again_and_its_counts_kept(backend: str, server: str) -> None:
    with serve_workers(backend, server) as (process, url):
        client, _ = connection_of(url, "1")
        client.close()
        metrics = httpx.get(f"{url}/metrics", timeout=30).text  # the worker's counts, now
        before = probes_total(metrics, "tcp_connect")
        assert per_process(metrics)["1"] > 0
        (worker,) = children_of(process.pid)
        os.kill(worker, signal.SIGKILL)
        wait_for(
            lambda: len(children_of(process.pid)) == 1 and children_of(process.pid) != [worker]
        )
        wait_for(
            lambda: (
                "anyprobe_serve_worker_restarts_total 1.0"
                in httpx.get(f"{url}/metrics", timeout=30).text
            )
        )
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert probes_total(metrics, "tcp_connect") == before
        assert "anyprobe_serve_workers 1.0" in metrics
        # The new worker answers too.
        client, _ = connection_of(url, "1")
        client.close()
        assert process.poll() is None


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_workers_stop_when_the_parent_is_killed(backend: str, server: str) -> None:
    with serve_workers(backend, server, workers="3") as (process, _url):
        workers = children_of(process.pid)
        process.kill()
        process.wait(PROCESS_LIMIT)
        for pid in workers:
            wait_for(lambda pid=pid: not alive(pid), f"worker {pid} to stop")


def test_a_system_without_so_reuseport_is_one_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import _socket
    import socket

    from anyprobe._errors import UsageError
    from anyprobe._serve import bind

    # What Python sees on a system without it: socket.create_server asks _socket.
    monkeypatch.delattr(_socket, "SO_REUSEPORT")
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(UsageError, match=r"^--workers: .*SO_REUSEPORT"):
        bind("127.0.0.1:0", reuse_port=True)
    bind("127.0.0.1:0").close()  # one process needs no SO_REUSEPORT
