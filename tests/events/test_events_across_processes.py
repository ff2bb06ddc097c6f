"""Events between real server processes, over HTTP."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from toto.client import TotoClient
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP
from tests.operations import free_ports, wait_until_answers

FAST = {"database": "memory", "logging": "warning", "method_module": "methods"}


def long_poll(url: str, name: str, timeout: float, into: list[Any]) -> threading.Thread:
    def run() -> None:
        into.append(TotoClient(url, timeout=timeout + 10).call("events.wait", {"name": name, "timeout": timeout}))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for_handlers(url: str, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while TotoClient(url).call("events.count")["handlers"] < count:
        assert time.monotonic() < deadline, f"{url} never held {count} event handlers"
        time.sleep(0.02)


def test_long_poll_on_one_server_answered_through_the_other(tmp_path: Path) -> None:
    options = {**FAST, "event_bus": "machine", "event_url": str(tmp_path / "events")}
    with ServerProcess(options, cwd=BASIC_APP) as a, ServerProcess(options, cwd=BASIC_APP) as b:
        answers: list[Any] = []
        waiter = long_poll(a.url, "news", 30, answers)
        wait_for_handlers(a.url, 1)
        assert b.client().call("events.send", {"name": "news", "args": {"headline": "ünïcode", "n": [1, 2]}})
        waiter.join(15)
        assert answers == [{"event": "news", "args": {"headline": "ünïcode", "n": [1, 2]}}]
        assert a.client().call("events.count")["handlers"] == 0


def test_unicast_reaches_exactly_one_server(tmp_path: Path) -> None:
    options = {**FAST, "event_bus": "machine", "event_url": str(tmp_path / "events")}
    with ServerProcess(options, cwd=BASIC_APP) as a, ServerProcess(options, cwd=BASIC_APP) as b:
        answers: list[Any] = []
        waiters = [long_poll(a.url, "job", 3, answers), long_poll(b.url, "job", 3, answers)]
        wait_for_handlers(a.url, 1)
        wait_for_handlers(b.url, 1)
        a.client().call("events.send", {"name": "job", "args": 7, "broadcast": False})
        for waiter in waiters:
            waiter.join(15)
        assert sorted(answers, key=repr) == [None, {"event": "job", "args": 7}]


def test_processes_group_shares_events_and_leaves_no_handlers() -> None:
    """``toto serve --processes=2``: a long poll on the first port is answered by an event
    sent through the second; hundreds of long polls that time out leave no handler."""
    port = free_ports(2)
    command = [
        sys.executable,
        "-m",
        "toto",
        "serve",
        "--processes=2",
        f"--port={port}",
        "--address=127.0.0.1",
        "--database=memory",
        "--logging=warning",
    ]
    proc = subprocess.Popen(command, cwd=BASIC_APP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    try:
        for url in urls:
            wait_until_answers(url)
        answers: list[Any] = []
        waiter = long_poll(urls[0], "chat", 30, answers)
        wait_for_handlers(urls[0], 1)
        TotoClient(urls[1]).call("events.send", {"name": "chat", "args": {"text": "hi"}})
        waiter.join(15)
        assert answers == [{"event": "chat", "args": {"text": "hi"}}]

        def poll(i: int) -> Any:
            return TotoClient(urls[i % 2], timeout=10).call("events.wait", {"name": f"quiet{i % 5}", "timeout": 0.01})

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(poll, range(400))) == [None] * 400
        assert [TotoClient(url).call("events.count")["handlers"] for url in urls] == [0, 0]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
