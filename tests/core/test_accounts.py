"""Accounts and sessions (PROTOCOL.md section 3) over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from toto.client import TotoClient, TotoClientError


def test_create_logs_in_and_answers_the_session(server, user_id):
    c = server.client()
    answer = c.create(user_id.upper(), "s3cret", nickname="Al")
    assert answer["user_id"] == user_id  # stored and answered lower-cased
    assert re.fullmatch(r"[A-Za-z0-9_\-]{22}", answer["session_id"])
    assert answer["expires"] > time.time()
    assert c.session is not None and c.session["session_id"] == answer["session_id"]
    assert c.call("whoami") == {"user_id": user_id}


def test_duplicate_user_id_is_1006_case_insensitively(server, user_id):
    server.client().create(user_id, "pw")
    with pytest.raises(TotoClientError) as err:
        server.client().create(user_id.upper(), "other")
    assert err.value.code == 1006


def test_login_is_case_insensitive_and_opens_a_new_session_each_time(server, user_id):
    c = server.client()
    first = c.create(user_id, "pw")
    second = c.login(user_id.upper(), "pw")
    third = c.login(user_id, "pw")
    ids = {first["session_id"], second["session_id"], third["session_id"]}
    assert len(ids) == 3
    # every one of them is a live session
    for sid in ids:
        probe = TotoClient(server.url)
        probe.session = {"session_id": sid, "user_id": user_id}
        assert probe.call("whoami") == {"user_id": user_id}


def test_wrong_password_and_unknown_user_answer_alike(server, user_id):
    server.client().create(user_id, "right")
    with pytest.raises(TotoClientError) as wrong:
        server.client().login(user_id, "wrong")
    with pytest.raises(TotoClientError) as unknown:
        server.client().login(user_id + "-nobody", "right")
    assert wrong.value.code == unknown.value.code == 1005
    assert wrong.value.value == unknown.value.value


def test_passwords_are_stored_as_scrypt_hashes(server, user_id):
    server.client().create(user_id, "plain-password")
    stored = server.client().call("account_hash", {"user_id": user_id})["password_hash"]
    assert stored.startswith("scrypt$") and "plain-password" not in stored
    server.client().create(user_id + "-twin", "plain-password")
    twin = server.client().call("account_hash", {"user_id": user_id + "-twin"})["password_hash"]
    assert twin != stored  # per-account salt


def test_login_rate_limit(start_server, user_id):
    srv = start_server(login_attempts=3, login_window=60)
    srv.client().create(user_id, "right")
    for _ in range(3):
        with pytest.raises(TotoClientError) as err:
            srv.client().login(user_id, "wrong")
        assert err.value.code == 1005
    with pytest.raises(TotoClientError) as err:
        srv.client().login(user_id, "right")  # even the right password waits now
    assert err.value.code == 1014


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, "bad\x00id", "tab\tid", "line\nbreak", 42, None])
def test_invalid_user_ids_are_1010(server, bad):
    c = server.client()
    with pytest.raises(TotoClientError) as err:
        c.call("account.create", {"user_id": bad, "password": "pw"})
    assert err.value.code == 1010


def test_user_id_of_256_characters_is_fine(server):
    long_id = "a" * 250 + "-" + str(time.time_ns())[-5:]
    assert server.client().create(long_id, "pw")["user_id"] == long_id


def test_missing_credentials_are_1003(server):
    with pytest.raises(TotoClientError) as err:
        server.client().call("account.create", {"user_id": "someone"})
    assert err.value.code == 1003 and "password" in err.value.value


def test_logout_ends_the_session(server, user_id):
    c = server.client()
    c.create(user_id, "pw")
    saved = dict(c.session)
    assert c.logout() == {"authenticated": False}
    stale = TotoClient(server.url)
    stale.session = saved
    with pytest.raises(TotoClientError) as err:
        stale.call("whoami")
    assert err.value.code == 1007


def test_authenticated_methods_refuse_anonymous_callers(server):
    with pytest.raises(TotoClientError) as err:
        server.client().call("whoami")
    assert err.value.code == 1004


def test_update_fields_and_password(server, user_id):
    c = server.client()
    c.create(user_id, "old-pw", color="red")
    other = server.client()
    other.login(user_id, "old-pw")
    with pytest.raises(TotoClientError) as err:
        c.call("account.update", {"password": "not-it", "color": "blue"})
    assert err.value.code == 1005
    answer = c.call("account.update", {"password": "old-pw", "new_password": "new-pw", "color": "blue"})
    assert answer == {"updated_fields": ["password", "color"]}
    assert c.call("whoami") == {"user_id": user_id}  # this session survives
    with pytest.raises(TotoClientError) as err:
        other.call("whoami")  # the user's other sessions end with a password change
    assert err.value.code == 1007
    with pytest.raises(TotoClientError):
        server.client().login(user_id, "old-pw")
    server.client().login(user_id, "new-pw")


def test_expired_session_is_1007_never_a_new_one(start_server, user_id):
    srv = start_server(session_ttl=1, session_renew=0.5)
    c = srv.client()
    c.create(user_id, "pw")
    time.sleep(1.5)
    with pytest.raises(TotoClientError) as err:
        c.call("whoami")
    assert err.value.code == 1007


def test_expiry_slides_with_use(start_server, user_id):
    srv = start_server(session_ttl=2, session_renew=0)
    c = srv.client()
    created = c.create(user_id, "pw")["expires"]
    for _ in range(4):  # 4 x 0.8 s outlives the 2 s ttl only if each call renews it
        time.sleep(0.8)
        assert c.call("whoami") == {"user_id": user_id}
    assert c.session["expires"] > created + 2


def test_session_state_persists_across_requests(server, user_id):
    c = server.client()
    c.create(user_id, "pw")
    nested = {"list": [1, {"deep": ["ü", None]}], "text": "漢字"}
    c.call("state.set", {"profile": nested, "n": 5})
    assert c.call("state.get") == {"profile": nested, "n": 5}
    c.call("counter.increment")
    assert c.call("counter.increment_async") == 2
    assert c.call("state.get", {"keys": ["count"]}) == {"count": 2}


def test_concurrent_increments_on_one_session_lose_nothing(server, user_id):
    owner = server.client()
    owner.create(user_id, "pw")
    session = dict(owner.session)
    errors: list[BaseException] = []

    def worker(method: str) -> None:
        client = TotoClient(server.url)
        client.session = dict(session)
        try:
            for _ in range(20):
                client.call(method)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("counter.increment" if i % 2 else "counter.increment_async",))
        for i in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert owner.call("state.get", {"keys": ["count"]}) == {"count": 1000}


def test_anonymous_session(server):
    c = server.client()
    assert c.call("anonymous") == {"anonymous": True}
    assert c.session is not None and c.session["user_id"] == ""
    assert c.call("optional") == {"user_id": None}
    with pytest.raises(TotoClientError) as err:
        c.call("whoami")
    assert err.value.code == 1004


def test_only_authenticated_methods_refuse_a_dead_session(server):
    # PROTOCOL.md section 3: a session is checked only where the method asks for one.
    c = server.client()
    c.session = {"session_id": "A" * 22, "user_id": "ghost"}
    assert c.call("optional") == {"user_id": None}
    assert c.call("echo", {"a": 1}) == {"a": 1}
    with pytest.raises(TotoClientError) as err:
        c.call("whoami")
    assert err.value.code == 1007


def test_native_db_handle(server):
    assert server.client().call("db")["type"] == "MemoryStorage"


def test_application_account_package_overrides_builtins(tmp_path, start_server):
    # An app that ships its own account.login keeps the other built-ins.
    pkg = tmp_path / "myapp"
    (pkg / "account").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "account" / "__init__.py").write_text("")
    (pkg / "account" / "login.py").write_text("def invoke(handler, parameters):\n    return 'custom login'\n")
    from toto.testing.server import ServerProcess

    with ServerProcess({"method_module": "myapp", "password_cost": 10}, cwd=str(tmp_path)) as srv:
        c = srv.client()
        assert c.call("account.login", {"user_id": "x", "password": "y"}) == "custom login"
        assert c.create("builtin-create", "pw")["user_id"] == "builtin-create"
        status, _, body = c.request(json.dumps({"method": "echo"}).encode(), sign=False)
        assert json.loads(body)["error"]["code"] == 1001


def test_a_custom_sign_in_gets_the_same_user_id_checks(server):
    """create_session checks and lower-cases the user id like account.create, before the storage sees it."""
    client = server.client()
    assert client.call("sign_in_as", {"user_id": "  Custom.User@Example.COM "}) == {
        "user_id": "custom.user@example.com"
    }
    assert client.call("whoami") == {"user_id": "custom.user@example.com"}
    for bad in ("x" * 257, "", "nul\x00inside"):
        with pytest.raises(TotoClientError) as caught:
            server.client().call("sign_in_as", {"user_id": bad})
        assert caught.value.code == 1010, bad
