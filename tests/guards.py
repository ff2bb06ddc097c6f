"""Checks of the guards a whole deployment shares through its storage (issue 13), made the
same way for every backend: two servers on one database stand for the processes of a
``--processes`` group or the servers behind a load balancer."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from typing import Any

from toto.client import TotoClient, TotoClientError
from toto.testing.server import ServerProcess

from tests.checks import user

Start = Callable[..., ServerProcess]


def send_raw(server: ServerProcess, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """POST exactly these bytes and headers (a captured request) and read the envelope."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", target, body=body, headers=headers)
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


def check_replays_refused_across_servers_and_restarts(start: Start, options: dict[str, Any]) -> None:
    """A signed session_key request captured on its way to one server runs once: replayed to
    another server of the deployment, or to the first after a restart, it answers 1015."""
    options = {**options, "hmac_mode": "session_key"}
    a, b = start(**options), start(**options)
    client = a.client(hmac_mode="session_key")
    client.create(user(), "a long secret")
    body = json.dumps({"method": "counter.increment", "parameters": {}}).encode()
    target, headers = client._prepare("POST", "/", body, None, None, True)
    assert send_raw(a, target, headers, body)["result"] == 1
    for replayed_on in (b, a):
        assert send_raw(replayed_on, target, headers, body)["error"]["code"] == 1015
    a.stop()
    restarted = start(**options)
    assert send_raw(restarted, target, headers, body)["error"]["code"] == 1015
    client.url = restarted.url
    on_restarted = restarted.client(hmac_mode="session_key")
    on_restarted.session = client.session
    assert on_restarted.call("state.get", {"keys": ["count"]}) == {"count": 1}, "the replays ran"


def check_no_lost_updates_across_servers(a: ServerProcess, b: ServerProcess, workers: int = 4, each: int = 100) -> int:
    """``workers`` clients x ``each`` increments of one session, spread over two servers:
    every acknowledged increment is in the state at the end. A write that lost the race
    answers 1018 and is retried, as the protocol tells clients to. Returns the retries."""
    owner = a.client()
    owner.create(user(), "a long secret")
    acknowledged = [0] * workers
    retries = [0] * workers
    failures: list[BaseException] = []

    def work(n: int) -> None:
        client = (a, b)[n % 2].client()
        client.session = dict(owner.session or {})
        try:
            done = 0
            while done < each:
                try:
                    client.call("counter.increment")
                except TotoClientError as error:
                    if error.code != 1018:
                        raise
                    retries[n] += 1
                    continue
                done += 1
                acknowledged[n] += 1
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert sum(acknowledged) == workers * each
    assert owner.call("state.get", {"keys": ["count"]}) == {"count": workers * each}, "an acknowledged update was lost"
    return sum(retries)


def check_login_limit_across_servers(a: ServerProcess, b: ServerProcess, attempts: int) -> None:
    """Servers started with ``login_attempts=attempts``: failures on either count against one
    limit, and guesses sent at once to both are all counted before any is checked."""
    name = user()
    a.client().create(name, "right password")
    for n in range(attempts):
        answer = _login_code((a, b)[n % 2], name, "wrong")
        assert answer == 1005, f"attempt {n + 1}: {answer}"
    for server in (a, b):
        assert _login_code(server, name, "wrong") == 1014
        assert _login_code(server, name, "right password") == 1014, "this client failed: it waits too"

    other = user()
    a.client().create(other, "right password")
    codes: list[int | None] = []

    def guess(n: int) -> None:
        codes.append(_login_code((a, b)[n % 2], other, f"guess {n}"))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 20 and set(codes) <= {1005, 1014}, codes
    assert codes.count(1005) <= attempts, f"{codes.count(1005)} passwords were checked, the limit is {attempts}"


def _login_code(server: ServerProcess, name: str, password: str) -> int | None:
    try:
        TotoClient(server.url).login(name, password)
    except TotoClientError as error:
        return error.code
    return None
