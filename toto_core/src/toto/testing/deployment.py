"""The deployment contract: real Toto servers over HTTP on one storage backend.

What every backend must give a deployment, proven the way clients see it: a complete
account and session flow, servers that share accounts and sessions, creates racing
across servers that make one account, concurrent updates of one session that lose
nothing (on one server and across servers), the guards every server shares through the
storage (a signed request runs once, however often it is replayed to whichever server;
one login limit for all servers), namespaces that keep deployments apart, the core's
checks giving the same answers on every backend, and an outage answered with 1013/503 in
time (and seen by the health check) that heals.
Subclass with the ``backend`` fixture of ``toto.testing.backend`` (the servers run
``toto.testing.methods``)::

    class TestMyDeployment(DeploymentContract):
        @pytest.fixture
        def backend(self):
            return my_backend("mine://127.0.0.1:7777")
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from toto.client import AsyncTotoClient, TotoClient, TotoClientError
from toto.exceptions import (
    ERROR_INVALID_SESSION_ID,
    ERROR_INVALID_USER_ID,
    ERROR_MALFORMED_REQUEST,
    ERROR_NOT_AUTHORIZED,
    ERROR_SESSION_CONFLICT,
    ERROR_SIGNATURE_EXPIRED,
    ERROR_TOO_MANY_LOGINS,
    ERROR_USER_ID_EXISTS,
    ERROR_USER_NOT_FOUND,
)
from toto.testing.backend import Backend
from toto.testing.health import check_health_is_down, check_health_is_up, health_turns
from toto.testing.outage import OUTAGE_BOUND, assert_unavailable_in_time
from toto.testing.proxy import TcpProxy
from toto.testing.server import ServerProcess

_users = itertools.count()
#: What signed-out callers get when their session ended (clients log out on both).
ENDED = (ERROR_NOT_AUTHORIZED, ERROR_INVALID_SESSION_ID)


def unique_user() -> str:
    """A user id no other test uses."""
    return f"user-{next(_users)}-{secrets.token_hex(4)}"


def check_servers_share_accounts_and_sessions(a: ServerProcess, b: ServerProcess) -> None:
    """Two servers of one deployment: a session made on one works on the other, state
    included, and a password change through either ends the user's other sessions on both."""
    name = unique_user()
    on_a = a.client()
    on_a.create(name, "old")
    on_b = b.client()
    on_b.session = dict(on_a.session or {})
    assert on_b.call("whoami") == {"user_id": name}, "the two servers share sessions"
    assert on_a.call("counter.increment") == 1
    assert on_b.call("counter.increment") == 2

    second = b.client()
    second.login(name, "old")
    second.call("account.update", {"password": "old", "new_password": "new"})
    for ended in (on_a, on_b):
        with pytest.raises(TotoClientError) as caught:
            ended.call("whoami")
        assert caught.value.code in ENDED
    assert second.call("whoami") == {"user_id": name}
    with pytest.raises(TotoClientError):
        a.client().login(name, "old")
    a.client().login(name, "new")


def send_raw(server: ServerProcess, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """POST exactly these bytes and headers (a captured request) and read the envelope."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", target, body=body, headers=headers)
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


def check_replays_refused_across_servers_and_restarts(start: Callable[[], ServerProcess]) -> None:
    """``start()`` starts one more ``hmac_mode=session_key`` server of a deployment. A signed
    request captured on its way to one server runs once: replayed to another server, or to
    a server started after the first stopped, it answers 1015."""
    a, b = start(), start()
    client = a.client(hmac_mode="session_key")
    client.create(unique_user(), "a long secret")
    body = json.dumps({"method": "counter.increment", "parameters": {}}).encode()
    target, headers = client._prepare("POST", "/", body, None, None, True)
    assert send_raw(a, target, headers, body)["result"] == 1
    for replayed_on in (b, a):
        assert send_raw(replayed_on, target, headers, body)["error"]["code"] == ERROR_SIGNATURE_EXPIRED
    a.stop()
    restarted = start()
    assert send_raw(restarted, target, headers, body)["error"]["code"] == ERROR_SIGNATURE_EXPIRED
    on_restarted = restarted.client(hmac_mode="session_key")
    on_restarted.session = client.session
    assert on_restarted.call("counter.increment") == 2, "none of the replays ran"


def check_no_lost_updates_across_servers(a: ServerProcess, b: ServerProcess, workers: int = 4, each: int = 100) -> int:
    """``workers`` clients x ``each`` increments of one session, spread over two servers:
    every acknowledged increment is in the state at the end. A write that lost the race
    answers 1018 and is retried, as the protocol tells clients to. Returns the retries."""
    owner = a.client()
    owner.create(unique_user(), "a long secret")
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
                    if error.code != ERROR_SESSION_CONFLICT:
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
    assert owner.call("counter.increment") == workers * each + 1, "an acknowledged update was lost"
    return sum(retries)


def check_login_limit_across_servers(a: ServerProcess, b: ServerProcess, attempts: int) -> None:
    """Servers started with ``login_attempts=attempts``: failures on either count against one
    limit, and guesses sent at once to both are all counted before any is checked."""
    name = unique_user()
    a.client().create(name, "right password")
    for n in range(attempts):
        answer = _login_code((a, b)[n % 2], name, "wrong")
        assert answer == ERROR_USER_NOT_FOUND, f"attempt {n + 1}: {answer}"
    for server in (a, b):
        assert _login_code(server, name, "wrong") == ERROR_TOO_MANY_LOGINS
        assert _login_code(server, name, "right password") == ERROR_TOO_MANY_LOGINS, "this client failed: it waits too"

    other = unique_user()
    a.client().create(other, "right password")
    codes: list[int | None] = []

    def guess(n: int) -> None:
        codes.append(_login_code((a, b)[n % 2], other, f"guess {n}"))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(codes) == 20 and set(codes) <= {ERROR_USER_NOT_FOUND, ERROR_TOO_MANY_LOGINS}, codes
    checked = codes.count(ERROR_USER_NOT_FOUND)
    assert checked <= attempts, f"{checked} passwords were checked, the limit is {attempts}"


def _login_code(server: ServerProcess, name: str, password: str) -> int | None:
    try:
        TotoClient(server.url).login(name, password)
    except TotoClientError as error:
        return error.code
    return None


class DeploymentContract:
    """Real servers over HTTP on one backend. Subclass with a ``backend`` fixture returning
    a ``toto.testing.Backend``."""

    #: Options every server of the contract gets: its methods, quick password hashing, quiet logs.
    server_defaults: ClassVar[dict[str, Any]] = {
        "method_module": "toto.testing.methods",
        "password_cost": 10,
        "logging": "warning",
    }

    @pytest.fixture(autouse=True)
    def _servers(self) -> Iterator[None]:
        self._started: list[ServerProcess] = []
        yield
        for server in self._started:
            server.close()

    def start(self, options: dict[str, Any]) -> ServerProcess:
        """Start a server with ``options`` (over ``server_defaults``); stopped after the test."""
        server = ServerProcess({**self.server_defaults, **options})
        self._started.append(server.start())
        return server

    def deployment(self, backend: Backend, count: int, **options: Any) -> list[ServerProcess]:
        """``count`` servers sharing one namespace of the backend, with ``options`` over its own."""
        namespace = backend.namespace()
        return [self.start({**backend.server_options(namespace, None), **options}) for _ in range(count)]

    # -- one server ---------------------------------------------------------------------
    def test_a_complete_server(self, backend: Backend) -> None:
        (server,) = self.deployment(backend, 1)
        client = server.client()
        name = unique_user()
        created = client.create(f"  {name.upper()} ", "pw-1", nickname="Zoë", tags=["a", 1, 2.5, None, {"x": True}])
        assert created["user_id"] == name, "user ids are stored stripped and lower-cased"
        assert len(created["session_id"]) >= 22
        assert client.call("whoami") == {"user_id": name}
        assert client.call("account_fields") == {"nickname": "Zoë", "tags": ["a", 1, 2.5, None, {"x": True}]}
        assert [client.call("counter.increment") for _ in range(3)] == [1, 2, 3]
        assert client.call("db")["type"], "handler.connection.db is the backend's native handle"
        with pytest.raises(TotoClientError) as duplicate:
            server.client().create(name.title(), "pw-2")
        assert duplicate.value.code == ERROR_USER_ID_EXISTS

        other = server.client()
        other.login(name.upper(), "pw-1")
        assert other.call("counter.increment") == 1, "a new login is a new session with its own state"
        other.call("account.update", {"password": "pw-1", "new_password": "pw-2", "city": "Zürich"})
        assert other.call("account_fields") == {
            "nickname": "Zoë",
            "tags": ["a", 1, 2.5, None, {"x": True}],
            "city": "Zürich",
        }
        with pytest.raises(TotoClientError) as ended:
            client.call("whoami")
        assert ended.value.code in ENDED, "a password change ends the user's other sessions"
        with pytest.raises(TotoClientError) as refused:
            server.client().login(name, "pw-1")
        assert refused.value.code == ERROR_USER_NOT_FOUND
        other.logout()
        with pytest.raises(TotoClientError) as ended:
            other.call("whoami")
        assert ended.value.code in ENDED
        server.client().login(name, "pw-2")
        assert "Traceback" not in server.output()

    def test_concurrent_updates_of_one_session_lose_nothing(self, backend: Backend) -> None:
        (server,) = self.deployment(backend, 1)
        owner = server.client()
        owner.create(unique_user(), "pw")

        async def client_loop() -> list[int]:
            client = AsyncTotoClient(server.url, timeout=120)
            client.session = dict(owner.session or {})
            return [await client.call("counter.increment") for _ in range(10)]

        async def main() -> list[list[int]]:
            from tornado.httpclient import AsyncHTTPClient

            AsyncHTTPClient.configure(None, max_clients=40)
            return await asyncio.gather(*(client_loop() for _ in range(40)))

        seen = sorted(value for values in asyncio.run(main()) for value in values)
        assert seen == list(range(1, 401))
        assert owner.call("counter.increment") == 401

    def test_user_ids_and_account_fields_are_checked_the_same_on_every_backend(self, backend: Backend) -> None:
        """The core checks what the backend could not store before the backend is called."""
        (server,) = self.deployment(backend, 1)
        for user_id in ("u" * 257, "", "   ", "ada\x00lovelace", "tab\there", 42, None):
            with pytest.raises(TotoClientError) as caught:
                server.client().create(user_id, "pw")  # type: ignore[arg-type]
            assert caught.value.code == ERROR_INVALID_USER_ID, (user_id, caught.value)

        name = unique_user()
        # Values JSON can carry but not every backend can store; the first two may also be
        # refused by a JSON decoder stricter than the standard library's, with the same code.
        refused: list[tuple[dict[str, Any], str]] = [
            ({"big": 2**70}, ""),
            ({"text": "half a pair \ud800"}, ""),
            ({"deep": _nested(40)}, "Account field deep.next"),
            ({"meta": {"a\x00b": 1}}, "Account field meta cannot be stored: names and keys may not hold NUL"),
            ({"": 1}, "field names must be non-empty text"),
        ]
        for fields, message in refused:
            with pytest.raises(TotoClientError) as caught:
                server.client().create(name, "pw", **fields)
            assert (caught.value.code, caught.value.status) == (ERROR_MALFORMED_REQUEST, 400), caught.value
            assert message in str(caught.value.value), caught.value
        with pytest.raises(TotoClientError) as caught:
            server.client().login(name, "pw")
        assert caught.value.code == ERROR_USER_NOT_FOUND, "no refused create made an account"

        client = server.client()
        long_text = "ß" * 1_000_000
        client.create(name, "pw", bio=long_text, top=2**63 - 1, low=-(2**63), deep=_nested(30))
        for fields, _ in refused[:4]:
            with pytest.raises(TotoClientError) as caught:
                client.call("account.update", {"password": "pw", **fields})
            assert caught.value.code == ERROR_MALFORMED_REQUEST
        stored = client.call("account_fields")
        assert stored == {"bio": long_text, "top": 2**63 - 1, "low": -(2**63), "deep": _nested(30)}, "kept whole"

        stranger = server.client()
        stranger.session = {**(client.session or {}), "session_id": "s" * 5000}
        with pytest.raises(TotoClientError) as caught:
            stranger.call("whoami")
        assert caught.value.code == ERROR_INVALID_SESSION_ID
        assert "Traceback" not in server.output()

    # -- several servers ---------------------------------------------------------------
    def test_two_servers_share_accounts_and_sessions(self, backend: Backend) -> None:
        _shared(backend)
        check_servers_share_accounts_and_sessions(*self.deployment(backend, 2))

    def test_creates_racing_across_servers_give_one_account(self, backend: Backend) -> None:
        # A queue for every hash: the race under test is the storage's, not the password pool's 1014.
        servers = self.deployment(backend, 2 if backend.shared else 1, password_queue=256)
        name = unique_user()

        async def attempt(i: int) -> int | None:
            spelled = name.upper() if i % 3 == 0 else name  # the race is on the lower-cased id
            try:
                await AsyncTotoClient(servers[i % len(servers)].url, timeout=120).create(spelled, f"pw-{i}")
                return i
            except TotoClientError as error:
                assert error.code == ERROR_USER_ID_EXISTS, error
                return None

        async def main() -> list[int | None]:
            from tornado.httpclient import AsyncHTTPClient

            AsyncHTTPClient.configure(None, max_clients=60)
            return await asyncio.gather(*(attempt(i) for i in range(60)))

        winners = [i for i in asyncio.run(main()) if i is not None]
        assert len(winners) == 1, winners
        for server in servers:
            server.client().login(name, f"pw-{winners[0]}")

    # -- the guards the servers share through the storage --------------------------------
    def test_no_update_of_one_session_is_lost_across_servers(self, backend: Backend) -> None:
        _shared(backend)
        a, b = self.deployment(backend, 2)
        check_no_lost_updates_across_servers(a, b)

    def test_a_signed_request_runs_once_across_servers_and_restarts(self, backend: Backend) -> None:
        _shared(backend)
        options = {**backend.server_options(backend.namespace(), None), "hmac_mode": "session_key"}
        check_replays_refused_across_servers_and_restarts(lambda: self.start(options))

    def test_the_login_limit_is_one_for_all_servers(self, backend: Backend) -> None:
        _shared(backend)
        a, b = self.deployment(backend, 2, login_attempts=3)
        check_login_limit_across_servers(a, b, attempts=3)

    def test_namespaces_keep_deployments_apart(self, backend: Backend) -> None:
        mine = self.start(backend.server_options(backend.namespace(), None))
        theirs = self.start(backend.server_options(backend.namespace(), None))
        name = unique_user()
        on_mine = mine.client()
        on_mine.create(name, "mine")
        on_mine.call("counter.increment")
        on_theirs = theirs.client()
        on_theirs.create(name, "theirs")  # the same user id in another deployment is no duplicate
        on_theirs.call("account.update", {"password": "theirs", "new_password": "theirs-2"})
        stranger = theirs.client()
        stranger.session = dict(on_mine.session or {})
        with pytest.raises(TotoClientError) as caught:
            stranger.call("whoami")
        assert caught.value.code == ERROR_INVALID_SESSION_ID, "another deployment's session is unknown here"
        assert on_mine.call("counter.increment") == 2, "their password change ended none of our sessions"
        mine.client().login(name, "mine")

    # -- an outage -------------------------------------------------------------------------
    def test_an_outage_answers_503_in_time_and_heals(self, backend: Backend) -> None:
        """Through a TCP proxy that is cut, black-holed and frozen in turn, with the
        backend's default timeouts: calls answer 1013/503 within the bound, the health check
        turns 503 naming the storage, and the server recovers by itself when the database
        answers again."""
        if backend.database is None:
            pytest.skip("an embedded database has no network to fail")
        with TcpProxy(*backend.database) as proxy:
            server = self.start(backend.server_options(backend.namespace(), (proxy.host, proxy.port)))
            client = server.client()
            name = unique_user()
            client.create(name, "pw")
            assert client.call("counter.increment") == 1
            for fault in (proxy.cut, proxy.blackhole, proxy.freeze):
                fault()
                assert_unavailable_in_time((lambda: client.call("whoami"), lambda: server.client().login(name, "pw")))
                check_health_is_down(health_turns(server.url, 503, OUTAGE_BOUND), ["storage"])
                proxy.restore()
                assert client.call("whoami") == {"user_id": name}, "the server recovers by itself"
                check_health_is_up(health_turns(server.url, 200, 20))
            assert client.call("counter.increment") == 2
            assert "Traceback" not in server.output()


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth - 1):
        value = {"next": value}
    return value


def _shared(backend: Backend) -> None:
    if not backend.shared:
        pytest.skip("servers on this backend do not share data")
