"""``toto.testing.TestClient`` and ``AsyncTestClient``: the TotoClient interface on a server
run in this process through its ASGI face (no port, no subprocess), in every signing mode."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator

import pytest
from toto.client import TotoClientError
from toto.testing import AsyncTestClient, TestClient

from tests.conftest import BASIC_APP


@pytest.fixture
def basic_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests' basic app importable as ``methods``, as an application's own tests have theirs."""
    monkeypatch.syspath_prepend(BASIC_APP)
    yield
    for name in [n for n in sys.modules if n == "methods" or n.startswith("methods.")]:
        del sys.modules[name]


def listening_sockets() -> int:
    """How many TCP sockets this process has listening (Linux: /proc/net/tcp*, state 0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            inodes |= {line.split()[9] for line in f.readlines()[1:] if line.split()[3] == "0A"}
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    return len(inodes & mine)


@pytest.mark.parametrize("mode", ["user_id", "session_key", "off"])
def test_the_client_interface_in_every_signing_mode(basic_app: None, mode: str) -> None:
    before = listening_sockets()
    with TestClient(method_module="methods", database="memory", hmac_mode=mode, password_cost=10) as client:
        assert client.server.options.hmac_mode == mode and client.server.transport is None
        assert listening_sockets() == before  # in memory: nothing listens
        created = client.create("Tess", "secret-pass")
        assert created["user_id"] == "tess" and ("key" in created) == (mode == "session_key")
        assert client.call("whoami") == {"user_id": "tess"}
        assert client.get("echo", word="hi") == {"word": "hi"}
        assert [client.call("counter.increment") for _ in range(3)] == [1, 2, 3]
        answers = client.batch({"a": ("whoami", None), "b": ("echo", {"n": 1}), "c": ("nothing.here", None)})
        assert answers["a"] == {"user_id": "tess"} and answers["b"] == {"n": 1}
        assert isinstance(answers["c"], TotoClientError) and answers["c"].code == 1001
        login = client.login("tess", "secret-pass")
        assert login["session_id"] != created["session_id"]
        assert client.call("counter.increment") == 1  # the state of the new session
        client.logout()
        with pytest.raises(TotoClientError) as caught:
            client.call("whoami")
        assert caught.value.code == 1004


@pytest.mark.parametrize("mode", ["user_id", "session_key"])
def test_the_real_pipeline_checks_signatures(basic_app: None, mode: str) -> None:
    with TestClient(method_module="methods", database="memory", hmac_mode=mode, password_cost=10) as client:
        client.create("sig", "secret-pass")
        body = json.dumps({"method": "whoami"}).encode()
        headers = {"x-toto-session-id": client.session["session_id"], "x-toto-hmac": "AAAA"}
        if mode == "session_key":
            headers["x-toto-timestamp"] = "1"
        status, answer_headers, answer = client.request(body, headers=headers, sign=False)
        assert status == 200 and json.loads(answer)["error"]["code"] in (1008, 1015)
        assert answer_headers["Content-Type"].startswith("application/json")
    # A client signing in another mode than the server's cannot verify the answers: 1009.
    options = {"method_module": "methods", "database": "memory", "hmac_mode": "session_key"}
    with TestClient(client_hmac_mode="user_id", **options) as mismatched:
        with pytest.raises(TotoClientError) as caught:
            mismatched.create("mismatch", "secret-pass")
        assert caught.value.code == 1009


def test_bad_input_answers_in_the_protocols_shape(basic_app: None) -> None:
    with TestClient(method_module="methods", database="memory") as client:
        status, _, answer = client.request(b"{not json", sign=False)
        assert json.loads(answer)["error"]["code"] in (1011, 1012) and status in (200, 400)
        with pytest.raises(TotoClientError) as caught:
            client.call("add_nothing_like_this")
        assert caught.value.code == 1001


def test_one_client_after_another(basic_app: None) -> None:
    for _ in range(2):
        with TestClient(method_module="methods", database="memory", password_cost=10) as client:
            assert client.create("again", "secret-pass")["user_id"] == "again"  # a fresh memory store each time


def test_a_server_that_cannot_start_raises_at_the_with(basic_app: None) -> None:
    with pytest.raises(Exception, match="no_such_methods"):
        with TestClient(method_module="no_such_methods", database="memory"):
            pass


def test_the_async_twin(basic_app: None) -> None:
    async def scenario() -> None:
        async with AsyncTestClient(method_module="methods", database="memory", hmac_mode="session_key") as client:
            await client.create("Async", "secret-pass")
            assert await client.call("whoami") == {"user_id": "async"}
            assert await asyncio.gather(*(client.call("echo", {"x": 1}) for _ in range(20))) == [{"x": 1}] * 20
            assert (await client.batch({"w": ("whoami", None)}))["w"] == {"user_id": "async"}
            assert await client.get("echo", q="1") == {"q": "1"}
            with pytest.raises(TypeError, match="ServerProcess"):
                await client.connect()

    asyncio.run(scenario())


def test_pytest_does_not_collect_the_clients() -> None:
    # Imported into a test module, a class named Test* would be collected (and warned about).
    assert TestClient.__test__ is False and AsyncTestClient.__test__ is False


def test_a_second_client_of_the_same_server_has_its_own_session(basic_app: None) -> None:
    with TestClient(method_module="methods", database="memory", password_cost=10) as ann:
        bob = ann.client()
        ann.create("ann", "secret-pass")
        bob.create("bob", "secret-pass")
        assert (ann.call("whoami"), bob.call("whoami")) == ({"user_id": "ann"}, {"user_id": "bob"})
        bob.close()  # closes nothing of the server: ann goes on
        assert ann.call("whoami") == {"user_id": "ann"}

    async def scenario() -> None:
        async with AsyncTestClient(method_module="methods", database="memory", password_cost=10) as cat:
            dan = cat.client()
            await cat.create("cat", "secret-pass")
            with pytest.raises(TotoClientError):
                await dan.call("whoami")
            await dan.login("cat", "secret-pass")
            assert await dan.call("whoami") == {"user_id": "cat"}

    asyncio.run(scenario())
