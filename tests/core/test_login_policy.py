"""The login policy (issue 13, SECURITY.md): guesses are counted before they are checked,
one request carries one guess, lock-out is not a weapon, and password hashing is bounded."""

from __future__ import annotations

import json
import threading
from typing import Any

from toto.client import TotoClient, TotoClientError


def login_code(url: str, user_id: str, password: str, address: str | None = None) -> int | None:
    """The error code of one login (None: it succeeded), from ``address`` through X-Real-Ip."""
    client = TotoClient(url)
    if address is None:
        try:
            client.login(user_id, password)
        except TotoClientError as error:
            return error.code
        return None
    body = json.dumps({"method": "account.login", "parameters": {"user_id": user_id, "password": password}})
    status, _, data = client.request(body.encode(), headers={"X-Real-Ip": address})
    envelope: dict[str, Any] = json.loads(data)
    return envelope["error"]["code"] if "error" in envelope else None


def test_a_batch_of_100_logins_checks_one_password(server, user_id):
    server.client().create(user_id, "the right one")
    calls = {
        str(n): {"method": "account.login", "parameters": {"user_id": user_id, "password": f"guess {n}"}}
        for n in range(100)
    }
    calls["50"]["parameters"]["password"] = "the right one"
    status, _, data = server.client().request(json.dumps({"batch": calls}).encode(), sign=False)
    answers = json.loads(data)["batch"]
    checked = [key for key, answer in answers.items() if answer.get("error", {}).get("code") != 1014]
    assert len(checked) == 1, f"{len(checked)} passwords were checked in one request"
    assert "result" not in answers["50"], "the right password arrived as guess 51: it was never checked"
    assert server.client().login(user_id, "the right one")["user_id"] == user_id


def test_logins_sent_at_once_are_counted_before_any_is_checked(start_server, user_id):
    srv = start_server(login_attempts=5)
    srv.client().create(user_id, "the right one")
    codes: list[int | None] = []
    threads = [
        threading.Thread(target=lambda n=n: codes.append(login_code(srv.url, user_id, f"guess {n}"))) for n in range(30)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 30 and set(codes) <= {1005, 1014}, codes
    assert codes.count(1005) <= 5, f"{codes.count(1005)} of 30 concurrent guesses were checked, the limit is 5"


def test_failures_from_one_address_do_not_lock_out_another(start_server, user_id):
    srv = start_server(xheaders=True, login_attempts=5)
    srv.client().create(user_id, "the right one")
    attacker, victim = "203.0.113.66", "198.51.100.7"
    assert [login_code(srv.url, user_id, "wrong", attacker) for _ in range(5)] == [1005] * 5
    assert login_code(srv.url, user_id, "the right one", attacker) == 1014, "the client that failed waits"
    assert login_code(srv.url, user_id, "the right one", victim) is None, "the owner's client did not fail"
    assert login_code(srv.url, user_id, "wrong", victim) == 1005


def test_the_backstops_refuse_new_addresses_but_not_trusted_ones(start_server, user_id):
    srv = start_server(xheaders=True, login_attempts=5, login_user_attempts=4, login_address_attempts=4)
    srv.client().create(user_id, "the right one")
    home = "198.51.100.7"
    assert login_code(srv.url, user_id, "the right one", home) is None  # this address is now trusted
    for n in range(4):  # a distributed guess: one try from each of many addresses
        assert login_code(srv.url, user_id, "wrong", f"203.0.113.{n}") == 1005
    assert login_code(srv.url, user_id, "the right one", "192.0.2.1") == 1014, "a new address meets the backstop"
    assert login_code(srv.url, user_id, "the right one", home) is None, "a trusted address passes it"

    # One address trying many users (a shared NAT, or a sprayer) meets the per-address backstop.
    nat = "192.0.2.200"
    for n in range(4):
        assert login_code(srv.url, f"{user_id}-sprayed-{n}", "wrong", nat) == 1005
    assert login_code(srv.url, f"{user_id}-sprayed-9", "wrong", nat) == 1014
    srv.client().create(f"{user_id}-colleague", "pw")
    assert login_code(srv.url, f"{user_id}-colleague", "pw", nat) == 1014


def test_password_hashes_per_process_are_bounded(start_server, user_id):
    srv = start_server(password_cost=15, password_threads=1, password_queue=0)
    codes: list[int | None] = []

    def create(n: int) -> None:
        try:
            TotoClient(srv.url, timeout=60, retries=0).create(f"{user_id}-{n}", "pw")
            codes.append(None)
        except TotoClientError as error:
            codes.append(error.code)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Busy is the retryable 1013 (HTTP 503); 1014 means locked out, which nobody is here.
    assert len(codes) == 8 and set(codes) <= {None, 1013}, codes
    assert codes.count(1013) >= 1, "eight hashes at once on one thread with no queue: some must be refused"
    assert codes.count(None) >= 1
    assert srv.client().call("echo", {"alive": True}) == {"alive": True}
