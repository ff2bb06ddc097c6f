"""The original's events (a chat with a persistent handler from ``event_init_module``), its
``startup_function``, and its modules at their original paths, over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWaiting
from typing import Any

import pytest
from toto.client import TotoClient, TotoClientError
from toto.testing import unique_user as user

from tests.compat.surface.conftest import DATABASES


def chat(listener: TotoClient, poster: TotoClient, prefix: str) -> tuple[Any, list[str]]:
    """Long-poll ``chat.receive_message`` on one client while posting through another until it
    answers; returns its answer and every message posted."""
    posted: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        answer: Future[Any] = pool.submit(listener.call, "chat.receive_message", {})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            posted.append(f"{prefix} {len(posted)} ü")
            assert poster.call("chat.post_message", {"message": posted[-1]}) == "message sent!"
            try:
                return answer.result(timeout=0.5), posted
            except StillWaiting:
                continue
        return answer.result(timeout=1), posted


def history_of(client: TotoClient, expected: int) -> list[str]:
    """The persistent handler's log once it heard ``expected`` messages (events are asynchronous)."""
    deadline = time.monotonic() + 10
    while True:
        messages: list[str] = client.call("chat.history")["messages"]
        if len(messages) >= expected or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def test_a_chat_with_a_persistent_handler_registered_by_the_event_init_module(seed_server) -> None:
    server = seed_server()
    listener, poster = server.client(), server.client()
    answer, posted = chat(listener, poster, "first")
    assert answer == {"message": posted[-1]}
    answer, more = chat(listener, poster, "second")
    assert answer == {"message": more[-1]}, "a new long poll hears the next message"
    # The request's handler fired once; the event_init_module's persistent one heard every message.
    assert history_of(poster, len(posted) + len(more)) == posted + more


def test_the_chat_across_two_servers_sharing_a_redis_event_bus(seed_server, redis_url: str, prefix: str) -> None:
    bus = {"event_bus": "redis", "event_url": redis_url, "redis_event_prefix": prefix + "events"}
    a, b = seed_server("redis", **bus), seed_server("redis", **bus)
    answer, posted = chat(b.client(), a.client(), "across")
    assert answer == {"message": posted[-1]}, "posted on a, heard by a long poll on b"
    for server in (a, b):
        assert history_of(server.client(), len(posted)) == posted, "every server's persistent handler hears each"


@pytest.mark.parametrize("database", DATABASES)
def test_the_startup_function_runs_once_with_the_connection_and_the_application(seed_server, database) -> None:
    seen = seed_server(database).client().call("startup_info")
    assert seen["calls"] == [{"db": seen["db"], "application": "TotoApplication"}]
    assert seen["db"] != "NoneType"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("event_init_module", "no_such_module", "cannot import 'no_such_module'"),
        ("event_init_module", "startup", "startup has no invoke(event_manager) function"),
        ("startup_function", "startup.missing", "startup has no function 'missing'"),
        ("startup_function", "nodot", "must be module.function"),
    ],
)
def test_a_startup_module_that_is_not_there_is_one_line(seed_server, option: str, value: str, message: str) -> None:
    with pytest.raises(RuntimeError) as caught:
        seed_server(**{option: value})
    output = str(caught.value)
    assert message in output and "Traceback" not in output


# -- modules at their original paths ---------------------------------------------------------------


def test_reexported_method_modules_resolve(seed_server) -> None:
    server = seed_server()
    client = server.client()
    name = user()
    # methods/__init__.py: from toto.methods.account import create as account_create
    session = client.call("account_create", {"user_id": name, "password": "pw"})
    assert session["user_id"] == name
    # methods/account/__init__.py: import toto.methods.account.login as login (the simple template)
    other = server.client()
    assert other.call("account.login", {"user_id": name, "password": "pw"})["user_id"] == name
    assert other.call("account.logout") == {"authenticated": False}
    # methods/__init__.py: import toto.methods.client_error as client_error
    assert client.call("client_error", {"client_error": "x\nFAKE LOG LINE", "client_type": "browser_js"}) == {
        "logged": True
    }
    assert client.call("client_error", {"client_error": "x", "client_type": "ios"}) == {"logged": False}
    log = server.output()
    assert "browser error from 127.0.0.1: 'x\\nFAKE LOG LINE'" in log
    assert "\nFAKE LOG LINE" not in log, "a report cannot forge a log line"


@pytest.mark.parametrize(
    "name",
    [
        "email",  # a package the method package imported, which is no method
        "email.mime",  # its submodules were never imported: the lookup must not import them
        "email.mime.text",
        "account_create.accounts",  # what a re-exported module imported
        "account_create.invoke",  # a function, not a module
        "client_error.log",
        "json",  # never imported by the method package at all
        "os.path",
    ],
)
def test_a_name_reaches_only_what_the_method_package_chose_to_export(seed_server, name: str) -> None:
    server = seed_server()
    client = server.client()
    with pytest.raises(TotoClientError) as caught:
        client.call(name)
    assert caught.value.code == 1001
    imported = client.call("seen", {"modules": ["email.mime", "email.mime.text"]})
    assert imported == {"email.mime": False, "email.mime.text": False}, "nothing was imported to find out"


def test_task_queue_and_instance_pool_run_off_the_event_loop(seed_server) -> None:
    client = seed_server().client()
    first = client.call("tasks_demo", {"n": 2})
    assert first["thread"].startswith("demo") and not first["on_loop_thread"]
    totals = {first["total"]}
    for _ in range(3):
        totals.add(client.call("tasks_demo", {"n": 2})["total"])
    assert totals <= {2, 4, 6, 8} and max(totals) >= 4, "the pool's two counters keep their counts"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_toto_secret_hashes_and_verifies_with_our_kdf() -> None:
    done = _python(
        "from toto.secret import *\n"
        "h = password_hash('pw ü', cost=10)\n"
        "assert h.startswith('scrypt$10$') and h != password_hash('pw ü', cost=10)\n"
        "assert verify_password('pw ü', h) and not verify_password('pw', h) and not verify_password('', h)\n"
        "assert not verify_password('pw', '$p5k2$1$salt$hash')\n"
        "print('ok')\n"
    )
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize(
    "module", ["worker", "workerconnection", "zmqworkerconnection", "httpworkerconnection", "clientsideworker"]
)
def test_the_worker_modules_say_in_one_line_they_are_outside_the_seed(module: str) -> None:
    done = _python(f"import toto.{module}")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: toto.{module} is the original Toto's ZeroMQ worker subsystem")
    assert "toto.tasks.TaskQueue" in last, "and names what to use instead"
