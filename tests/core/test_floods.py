"""Floods of password calls (issue 23): hashing shared fairly between addresses and accounts,
creates and logins of one address counted across a deployment, and a server at capacity
answering the retryable 1013 (HTTP 503, Retry-After), never 1014."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from typing import Any

import pytest
from toto.client import AsyncTotoClient, TotoClient, TotoClientError

#: The load run: clients at once, calls each (an account.create, then counter.increment).
CLIENTS, CALLS = 50, 30


def call_from(url: str, address: str, method: str, parameters: dict[str, Any]) -> tuple[int, Any, int | None]:
    """One call from ``address`` (X-Real-Ip, the server runs with xheaders): status, headers and error code."""
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    status, headers, data = TotoClient(url, timeout=120, retries=0).request(body, headers={"X-Real-Ip": address})
    envelope: dict[str, Any] = json.loads(data)
    return status, headers, envelope["error"]["code"] if "error" in envelope else None


def test_fifty_clients_creating_accounts_and_counting_get_no_error(start_server, user_id):
    # The real hashing cost (scrypt N=2**14), so that the fifty creates overlap in the hasher.
    srv = start_server(password_cost=14)
    barrier = threading.Barrier(CLIENTS)
    errors: Counter[int] = Counter()
    counts: dict[int, list[int]] = {}

    def run(n: int) -> None:
        client = TotoClient(srv.url, timeout=120, retries=0)  # a 1013 counts as an error here
        barrier.wait(60)
        answers: list[int] = []
        for call in range(CALLS):
            try:
                if call == 0:
                    client.create(f"{user_id}-{n}", "pw")
                else:
                    answers.append(client.call("counter.increment"))
            except TotoClientError as error:
                errors[error.code] += 1
        counts[n] = answers

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(counts) == CLIENTS, "every client finished"
    assert sum(errors.values()) == 0, f"{sum(errors.values())} of {CLIENTS * CALLS} calls failed: {dict(errors)}"
    assert all(answers == list(range(1, CALLS)) for answers in counts.values()), "each session counted exactly"


def test_a_flood_of_creates_from_one_address_does_not_starve_another_address_s_logins(start_server, user_id):
    # The per-address counts are off, so only the hasher's fairness stands between the flood and
    # the victim; a short queue, so that the flood fills it.
    srv = start_server(
        xheaders=True, password_cost=14, password_threads=2, password_queue=6, login_attempts=0, login_address_calls=0
    )
    srv.client().create(user_id, "the right one")
    victim_id = f"{user_id}-victim"
    srv.client().create(victim_id, "victim's")
    attacker, victim = "203.0.113.66", "198.51.100.7"
    stop = threading.Event()
    flood: Counter[int | None] = Counter()
    flood_answered = threading.Condition()

    def flooder() -> None:
        while not stop.is_set():
            _, _, code = call_from(srv.url, attacker, "account.create", {"user_id": user_id, "password": "x"})
            with flood_answered:
                flood[code] += 1
                flood_answered.notify_all()

    threads = [threading.Thread(target=flooder) for _ in range(24)]
    for thread in threads:
        thread.start()
    try:
        with flood_answered:
            assert flood_answered.wait_for(lambda: sum(flood.values()) >= 24, 120), "the flood is on"
        logins = [
            call_from(srv.url, victim, "account.login", {"user_id": victim_id, "password": "victim's"})
            for _ in range(10)
        ]
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    codes = [code for _, _, code in logins]
    assert codes == [None] * 10, f"the victim's logins during the flood answered {codes}"
    assert set(flood) <= {1006, 1013}, f"the flood's answers: {dict(flood)}"


def test_a_server_at_capacity_answers_1013_with_503_and_retry_after(start_server, user_id):
    # One thread and no queue: of calls from different addresses at once, all but one find it full.
    srv = start_server(xheaders=True, password_cost=15, password_threads=1, password_queue=0)
    answers: list[tuple[int, Any, int | None]] = []
    barrier = threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait(60)
        answers.append(
            call_from(srv.url, f"192.0.2.{n}", "account.create", {"user_id": f"{user_id}-{n}", "password": "pw"})
        )

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    codes = [code for _, _, code in answers]
    assert len(codes) == 8 and set(codes) <= {None, 1013}, codes
    assert codes.count(1013) >= 1 and codes.count(None) >= 1, codes
    for status, headers, code in answers:
        if code == 1013:
            assert status == 503 and headers.get("Retry-After") == "1", (status, dict(headers))
    # The client retries what the server says it did not run, so every account gets made.
    for n, code in enumerate(codes):
        if code == 1013:
            TotoClient(srv.url, timeout=120).create(f"{user_id}-again-{n}", "pw")


def test_creates_and_logins_of_one_address_are_counted_across_a_deployment(start_server, tmp_path, user_id):
    # Two servers on one SQLite file: what one address may ask for is counted in the storage.
    options = {"database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'toto.db'}", "xheaders": True}
    a = start_server(**options, login_address_calls=6)
    b = start_server(**options, login_address_calls=6)
    flooder, other = "203.0.113.9", "198.51.100.9"
    codes = [
        call_from(server.url, flooder, "account.create", {"user_id": f"{user_id}-{n}", "password": "pw"})[2]
        for n, server in enumerate([a, b, a, b, a, b])
    ]
    assert codes == [None] * 6, codes
    for server in (a, b):
        _, _, code = call_from(server.url, flooder, "account.login", {"user_id": f"{user_id}-0", "password": "pw"})
        assert code == 1014, "the seventh call of the address, on either server"
    assert call_from(b.url, flooder, "account.create", {"user_id": f"{user_id}-new", "password": "pw"})[2] == 1014
    # Another address is counted on its own.
    assert call_from(a.url, other, "account.create", {"user_id": f"{user_id}-other", "password": "pw"})[2] is None


def test_creates_finding_a_taken_user_id_count_as_failures_of_their_address(start_server, user_id):
    # 1006 says an account exists: probing for accounts is as slow as guessing passwords.
    srv = start_server(xheaders=True, login_address_attempts=3)
    srv.client().create(user_id, "pw")
    prober, other = "203.0.113.10", "198.51.100.10"
    probe = {"user_id": user_id, "password": "x"}
    assert [call_from(srv.url, prober, "account.create", probe)[2] for _ in range(4)] == [1006, 1006, 1006, 1014]
    fresh = {"user_id": f"{user_id}-fresh", "password": "pw"}
    assert call_from(srv.url, prober, "account.create", fresh)[2] == 1014, "the address waits, whatever it asks"
    assert call_from(srv.url, other, "account.create", fresh)[2] is None
    # A create that succeeds gives its count back: an address may make many accounts.
    for n in range(5):
        assert call_from(srv.url, other, "account.create", {"user_id": f"{user_id}-{n}", "password": "pw"})[2] is None


def test_clients_send_again_a_call_the_server_did_not_run(start_server):
    srv = start_server()
    token = secrets.token_hex(4)
    status, headers, data = srv.client().request(
        json.dumps({"method": "busy_once", "parameters": {"token": token + "-raw"}}).encode()
    )
    assert (status, headers.get("Retry-After"), json.loads(data)["error"]["code"]) == (503, "1", 1013)
    assert TotoClient(srv.url).call("busy_once", {"token": token, "times": 2}) == 3, "two refusals, then it ran"
    with pytest.raises(TotoClientError) as caught:
        TotoClient(srv.url, retries=1).call("busy_once", {"token": token + "-many", "times": 2})
    assert (caught.value.code, caught.value.status) == (1013, 503), "out of retries, the answer is the server's"

    async def twin() -> Any:
        return await AsyncTotoClient(srv.url).call("busy_once", {"token": token + "-async"})

    assert asyncio.run(twin()) == 2


def test_a_call_refused_as_busy_counts_against_nobody(start_server, user_id):
    # 1013 says the call did not run: a client that sends it again must not lock itself out.
    srv = start_server(
        password_threads=1, password_queue=0, login_attempts=2, login_address_attempts=2, login_address_calls=3
    )
    srv.client().create(user_id, "pw")  # the address's first call
    holder = threading.Thread(target=lambda: srv.client(timeout=150).call("hold_hasher", {"action": "hold"}))
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while not srv.client().call("hold_hasher", {"action": "held"}):
            assert time.monotonic() < deadline, "the hasher's thread was never held"
            time.sleep(0.05)
        busy = [
            call_from(srv.url, "127.0.0.1", "account.login", {"user_id": user_id, "password": "pw"}) for _ in range(5)
        ]
        busy += [
            call_from(srv.url, "127.0.0.1", "account.create", {"user_id": f"{user_id}-{n}", "password": "pw"})
            for n in range(3)
        ]
    finally:
        srv.client().call("hold_hasher", {"action": "release"})
        holder.join(150)
    assert [(status, code) for status, _, code in busy] == [(503, 1013)] * 8
    # Neither the pair's failures, nor the address's, nor its calls moved.
    assert srv.client().login(user_id, "pw")["user_id"] == user_id
    assert srv.client().create(f"{user_id}-after", "pw")["user_id"] == f"{user_id}-after"
