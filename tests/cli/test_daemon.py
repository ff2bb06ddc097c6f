"""``toto serve --start/--stop/--restart`` and ``--processes``, through the real command."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from toto.client import TotoClient

from tests.conftest import BASIC_APP
from tests.operations import alive, free_ports, http_args, toto, toto_command, wait_until_answers

BASE = ["--address=127.0.0.1", "--database=memory", "--method_module=methods"]


def start(tmp_path: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return toto(
        "serve",
        "--start",
        f"--port={port}",
        f"--pidfile={tmp_path / 'toto.pid'}",
        *BASE,
        *http_args(),
        *extra,
        cwd=BASIC_APP,
    )


def stop(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return toto("serve", "--stop", f"--pidfile={tmp_path / 'toto.pid'}", *extra, cwd=BASIC_APP)


def pids(tmp_path: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in sorted(tmp_path.glob("toto*.pid"))]


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def cleanup(tmp_path: Path) -> Any:
    """Whatever a test leaves running is stopped (and the test has already failed)."""
    yield
    if (tmp_path / "toto.pid").exists():
        stop(tmp_path, "--stop_timeout=5")


def assert_gone(server_pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in server_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in server_pids if alive(pid)], "server processes left behind"


def test_start_call_stop_leaves_nothing(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(1)
    started = start(tmp_path, port)
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout and str(tmp_path / "toto.pid") in started.stdout
    [pid] = pids(tmp_path)
    assert alive(pid)
    called = toto("call", f"http://127.0.0.1:{port}", "echo", '{"a": [1, "ü"]}')
    assert called.returncode == 0, called.stderr
    assert '"ü"' in called.stdout
    again = start(tmp_path, port)
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0 and "already runs" in again.stderr and str(pid) in again.stderr
    stopped = stop(tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "toto.pid").exists()
    assert_gone([pid])
    assert refused(port)
    assert "Toto listening" in (tmp_path / "toto.log").read_text()
    nothing = stop(tmp_path)
    assert nothing.returncode == 1 and "no server is running" in nothing.stderr


def test_stale_pidfile_is_replaced(tmp_path: Path, cleanup: Any) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "toto.pid").write_text(f"{dead.pid}\n")
    port = free_ports(1)
    started = start(tmp_path, port, f"--log_file={tmp_path / 'server.log'}")
    assert started.returncode == 0, started.stderr
    assert "stale pidfile" in started.stdout
    [pid] = pids(tmp_path)
    assert pid != dead.pid
    assert TotoClient(f"http://127.0.0.1:{port}").call("echo", {"x": 1}) == {"x": 1}
    assert (tmp_path / "server.log").exists()
    assert stop(tmp_path).returncode == 0
    assert_gone([pid])


def test_restart_replaces_the_server(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(1)
    assert start(tmp_path, port).returncode == 0
    [first] = pids(tmp_path)
    restarted = toto(
        "serve", "--restart", f"--port={port}", f"--pidfile={tmp_path / 'toto.pid'}", *BASE, *http_args(), cwd=BASIC_APP
    )
    assert restarted.returncode == 0, restarted.stderr
    [second] = pids(tmp_path)
    assert second != first and not alive(first)
    wait_until_answers(f"http://127.0.0.1:{port}")
    assert stop(tmp_path).returncode == 0
    assert_gone([second])


def test_failed_start_says_why(tmp_path: Path) -> None:
    port = free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))  # bound, not listening: the server cannot bind, nobody answers
        result = start(tmp_path, port)
    assert result.returncode == 1
    assert "exited while starting" in result.stderr and "Address already in use" in result.stderr
    assert not (tmp_path / "toto.pid").exists()


def test_start_on_a_port_another_program_listens_on_fails(tmp_path: Path) -> None:
    # Something answers on the port, so polling it would take that program for the server:
    # --start waits for the server's own word that it listens, and gets the log's error line.
    port = free_ports(1)
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        result = start(tmp_path, port)
    assert result.returncode == 1, result.stdout
    assert "started" not in result.stdout
    line = result.stderr.strip()
    assert line.startswith("toto: error: the server exited while starting:"), line
    assert "Address already in use" in line and len(line.splitlines()) == 1
    assert not (tmp_path / "toto.pid").exists()
    stopped = stop(tmp_path)
    assert stopped.returncode == 1 and "no server is running" in stopped.stderr


def test_a_group_child_that_cannot_bind_at_first_is_restarted_and_start_waits_for_it(
    tmp_path: Path, cleanup: Any
) -> None:
    # Port+1 is taken while the group starts (another program's connection, say): child 1
    # dies, the parent restarts it, and --start reports success once both listen.
    port = free_ports(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port + 1))
    command = subprocess.Popen(
        [
            *toto_command(),
            "serve",
            "--start",
            "--processes=2",
            f"--port={port}",
            f"--pidfile={tmp_path / 'toto.pid'}",
            *BASE,
            *http_args(),
        ],
        cwd=BASIC_APP,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = tmp_path / "toto.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Address already in use" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
    finally:
        blocker.close()
    out, err = command.communicate(timeout=120)
    assert command.returncode == 0, err
    assert "started" in out
    for p in (port, port + 1):
        assert TotoClient(f"http://127.0.0.1:{p}").call("echo", {"p": p}) == {"p": p}
    assert stop(tmp_path).returncode == 0


def test_group_restarts_a_dead_child_and_stops_whole(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(2)
    started = start(tmp_path, port, "--processes=2")
    assert started.returncode == 0, started.stderr
    assert (tmp_path / "toto.0.pid").exists() and (tmp_path / "toto.1.pid").exists()
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    child = int((tmp_path / "toto.0.pid").read_text())
    assert TotoClient(urls[0]).call("events.count")["pid"] == child
    os.kill(child, 9)
    deadline = time.monotonic() + 20
    while True:
        text = (tmp_path / "toto.0.pid").read_text().strip()
        if text and int(text) != child:
            break
        assert time.monotonic() < deadline, "the parent did not restart the killed child"
        time.sleep(0.05)
    wait_until_answers(urls[0])
    replacement = int((tmp_path / "toto.0.pid").read_text())
    assert TotoClient(urls[0]).call("events.count")["pid"] == replacement
    everything = pids(tmp_path)
    assert len(everything) == 3
    stopped = stop(tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert_gone(everything)
    assert list(tmp_path.glob("*.pid")) == []
    log = (tmp_path / "toto.log").read_text()
    assert "died (signal 9); starting it again" in log and "all server processes stopped" in log


def test_reuse_port_shares_one_port(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(1)
    started = start(tmp_path, port, "--processes=2", "--reuse_port")
    assert started.returncode == 0, started.stderr
    served_by: set[int] = set()
    deadline = time.monotonic() + 15  # --start returns once one process listens; the other may still start
    while len(served_by) < 2 and time.monotonic() < deadline:
        served_by |= {TotoClient(f"http://127.0.0.1:{port}").call("events.count")["pid"] for _ in range(20)}
    assert len(served_by) == 2, "both processes accept connections on the shared port"
    everything = pids(tmp_path)
    assert served_by < set(everything)
    assert stop(tmp_path).returncode == 0
    assert_gone(everything)


def test_sigterm_drains_in_flight_requests(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(1)
    assert start(tmp_path, port, "--drain_timeout=30").returncode == 0
    [pid] = pids(tmp_path)
    url = f"http://127.0.0.1:{port}"
    answers: list[Any] = []
    # The call stays in flight until the test releases it (no guess of how long a loaded
    # machine takes to deliver it, or to stop accepting connections).
    gate = {"entered": str(tmp_path / "entered"), "release": str(tmp_path / "release")}
    slow = threading.Thread(target=lambda: answers.append(TotoClient(url, timeout=60).call("gate", gate)))
    slow.start()
    deadline = time.monotonic() + 30
    while not os.path.exists(gate["entered"]):
        assert time.monotonic() < deadline, "the call never reached the server"
        time.sleep(0.02)
    stopping = threading.Thread(target=lambda: answers.append(stop(tmp_path).returncode))
    stopping.start()
    deadline = time.monotonic() + 30
    while not refused(port):
        assert time.monotonic() < deadline, "a draining server must stop accepting connections"
        time.sleep(0.02)
    assert alive(pid), "the server must wait for the request in flight"
    Path(gate["release"]).touch()
    slow.join(60)
    stopping.join(60)
    assert {"released": True} in answers and 0 in answers
    assert_gone([pid])
    log = (tmp_path / "toto.log").read_text()
    assert "draining: 1 in flight, waiting up to 30s" in log and "Toto stopped" in log


def test_stop_kills_a_server_that_does_not_drain_in_time(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(1)
    assert start(tmp_path, port, "--drain_timeout=60").returncode == 0
    [pid] = pids(tmp_path)
    url = f"http://127.0.0.1:{port}"
    waiter = threading.Thread(target=lambda: _ignore(lambda: TotoClient(url, timeout=30).call("hold")))
    waiter.start()
    time.sleep(0.5)
    stopped = stop(tmp_path, "--stop_timeout=1")
    assert stopped.returncode == 0
    assert "killed" in stopped.stderr
    assert_gone([pid])
    assert not (tmp_path / "toto.pid").exists()
    waiter.join(30)


def _ignore(call: Any) -> None:
    try:
        call()
    except Exception:
        pass


def test_processes_zero_runs_one_per_cpu(tmp_path: Path, cleanup: Any) -> None:
    cpus = os.cpu_count() or 1
    port = free_ports(cpus)
    started = start(tmp_path, port, "--processes=0")
    assert started.returncode == 0, started.stderr
    assert len(list(tmp_path.glob("toto.*.pid"))) == cpus
    served_by = {TotoClient(f"http://127.0.0.1:{port + i}").call("events.count")["pid"] for i in range(cpus)}
    assert len(served_by) == cpus
    everything = pids(tmp_path)
    assert stop(tmp_path).returncode == 0
    assert_gone(everything)


def test_children_do_not_outlive_a_killed_parent(tmp_path: Path, cleanup: Any) -> None:
    port = free_ports(2)
    assert start(tmp_path, port, "--processes=2").returncode == 0
    parent = int((tmp_path / "toto.pid").read_text())
    children = [int((tmp_path / f"toto.{i}.pid").read_text()) for i in range(2)]
    os.kill(parent, 9)
    assert_gone(children)
    # Stale pidfiles (and pids that may belong to others by now) are never signalled.
    again = start(tmp_path, port, "--processes=2")
    assert again.returncode == 0, again.stderr
    assert "stale pidfile" in again.stdout
    everything = pids(tmp_path)
    assert parent not in everything
    assert stop(tmp_path).returncode == 0
    assert_gone(everything)
