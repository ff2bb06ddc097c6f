"""How the contract kit reaches a storage backend, and the storage tests that need more than
one instance: namespaces that keep apps apart, and outages through a TCP proxy.

A backend's tests describe it once with a ``Backend`` and reuse it for
``BackendContract`` here and ``toto.testing.deployment.DeploymentContract``::

    import pytest
    from toto.testing import Backend, BackendContract

    def my_backend(url):
        def storage(namespace, address=None):
            return MyStorage(url_at(url, address), prefix=namespace, timeout=1.0)

        def server_options(namespace, address=None):
            return {"database": "mine", "database_url": url_at(url, address), "my_prefix": namespace}

        return Backend(storage=storage, server_options=server_options, address=("127.0.0.1", 7777))

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            return my_backend("mine://127.0.0.1:7777")
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from toto.exceptions import ERROR_SERVICE_UNAVAILABLE, StorageUnavailable
from toto.storage import Storage
from toto.testing.contract import run_storages, session_record
from toto.testing.outage import OUTAGE_BOUND, assert_storage_unavailable_in_time
from toto.testing.proxy import TcpProxy

#: ``(host, port)`` of a database server.
Address = tuple[str, int]
_namespaces = itertools.count()


def unique_namespace() -> str:
    """A namespace no other test uses: letters, digits and ``_``, at most 20 characters (a valid
    SQL table prefix, Redis key prefix or MongoDB collection prefix)."""
    return f"k{secrets.token_hex(4)}{next(_namespaces)}_"


@dataclass
class Backend:
    """What the kit needs to know of a backend.

    ``storage(namespace, address)`` makes an unopened storage whose data lives under
    ``namespace`` (two namespaces of one database never see each other's accounts or
    sessions). ``server_options(namespace, address)`` gives the options of a server
    storing the same way. ``address`` is ``(host, port)`` to reach the database at:
    given only by the outage tests (a ``TcpProxy`` in front of the database), which
    expect the backend's default timeouts; None means where the database really is.
    ``database`` is that real ``(host, port)``; None for an embedded database, whose
    outage tests do not apply. ``shared`` is False for a backend whose instances do not
    share data (the in-process memory storage). ``namespace()`` makes a fresh namespace
    (the default: ``unique_namespace``; a backend whose test run drops everything under a
    prefix of its own passes one that starts with it).
    """

    storage: Callable[[str, Address | None], Storage]
    server_options: Callable[[str, Address | None], dict[str, Any]]
    database: Address | None = None
    shared: bool = True
    namespace: Callable[[], str] = field(default=unique_namespace)


class BackendContract:
    """Storage tests across instances of one backend. Subclass with a ``backend`` fixture
    returning a ``Backend``."""

    def test_namespaces_keep_apps_apart(self, backend: Backend) -> None:
        if not backend.shared:
            pytest.skip("instances of this backend do not share data")
        mine, theirs = backend.namespace(), backend.namespace()

        async def body(a: Storage, b: Storage, a_again: Storage) -> None:
            await a.create_account("shared", "mine", {"app": "a"})
            await a.store_session(session_record("same-id-in-both", user_id="shared", state=b"mine"))
            assert await b.get_account("shared") is None
            assert await b.load_session("same-id-in-both") is None
            await b.create_account("shared", "theirs", {"app": "b"})  # no duplicate: another app
            await b.store_session(session_record("same-id-in-both", user_id="shared", state=b"theirs"))
            await b.delete_user_sessions("shared")
            await b.purge_expired()
            kept = await a_again.load_session("same-id-in-both")
            assert kept is not None and kept.state == b"mine", "another namespace's deletes reach nothing here"
            account = await a_again.get_account("shared")
            assert account is not None and (account.password_hash, account.fields) == ("mine", {"app": "a"})

        run_storages(body, backend.storage(mine, None), backend.storage(theirs, None), backend.storage(mine, None))

    @pytest.mark.parametrize("fault", ["cut", "blackhole", "freeze"])
    def test_an_outage_raises_storage_unavailable_in_time_and_heals(self, backend: Backend, fault: str) -> None:
        """``cut`` refuses connections, ``blackhole`` accepts and never answers, ``freeze``
        keeps connections open and passes nothing: each call meets 1013 in time, reads of one
        event-loop turn included, and the first call after the fault succeeds."""
        database = _networked(backend)
        with TcpProxy(*database) as proxy:

            async def body(s: Storage) -> None:
                await s.create_account("faulty", "h", {})
                await s.store_session(session_record("fault-session-1", user_id="faulty"))

                getattr(proxy, fault)()
                await assert_storage_unavailable_in_time(
                    (
                        s.load_session("fault-session-1"),
                        s.get_account("faulty"),
                        s.store_session(session_record("fault-session-2")),
                    )
                )
                started = time.monotonic()
                together = await asyncio.gather(
                    *(s.load_session(f"fault-session-{i}") for i in range(10)), return_exceptions=True
                )
                assert time.monotonic() - started < OUTAGE_BOUND
                for error in together:
                    assert isinstance(error, StorageUnavailable), error
                    assert (error.code, error.status) == (ERROR_SERVICE_UNAVAILABLE, 503), error
                assert await s.ping() is False

                proxy.restore()
                assert await s.load_session("fault-session-1") is not None, "the first call after the fault succeeds"
                assert await s.get_account("faulty") is not None
                assert await s.ping() is True

            run_storages(body, backend.storage(backend.namespace(), (proxy.host, proxy.port)))

    def test_a_storage_opened_while_the_database_is_down_serves_once_it_is_up(self, backend: Backend) -> None:
        database = _networked(backend)
        with TcpProxy(*database) as proxy:
            proxy.cut()

            async def body(s: Storage) -> None:
                await assert_storage_unavailable_in_time((s.get_account("late"),))
                proxy.restore()
                await s.create_account("late", "h", {})
                assert await s.get_account("late") is not None

            run_storages(body, backend.storage(backend.namespace(), (proxy.host, proxy.port)))


def _networked(backend: Backend) -> Address:
    if backend.database is None:
        pytest.skip("an embedded database has no network to fail")
    return backend.database
