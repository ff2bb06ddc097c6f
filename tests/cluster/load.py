"""The load of the fault suite and the figures it yields, as clients see them.

- ``Worker``: a signed-in client behind HAProxy counting on its session (``counter.increment``:
  each answer is the session's count, so a count that went back is an acknowledged write
  lost) and publishing ``feed`` events numbered per publisher; an answer saying its session
  is gone is a forced new login (it signs in again and goes on).
- ``Subscriber``: reads every server's ``feed.since`` (what it received of the bus, in order)
  and notices a server that restarted (its boot id changed).
- ``Figures``: one fault's row: writes lost, forced logins, events lost/duplicated/reordered on
  the servers that lived through the fault, replays accepted, the login limit, the error
  window and p99.

Every loop is bounded by a deadline or by the run's stop event.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from toto.client import TotoClient, TotoClientError
from toto.exceptions import (
    ERROR_INVALID_SESSION_ID,
    ERROR_NOT_AUTHORIZED,
    ERROR_SERVICE_UNAVAILABLE,
    ERROR_USER_ID_EXISTS,
    ERROR_USER_NOT_FOUND,
)
from toto.testing import unique_user

ENDED = (ERROR_NOT_AUTHORIZED, ERROR_INVALID_SESSION_ID)
#: No envelope came back (a timeout, a reset, HAProxy's 502/504 page): the call may or may not have run.
NO_ANSWER = -1
PASSWORD = "a long secret"


def code_of(error: BaseException) -> int:
    if isinstance(error, TotoClientError) and isinstance(error.code, int):
        if getattr(error, "status", None) in (502, 504):
            return NO_ANSWER
        return error.code
    return NO_ANSWER


@dataclass
class Sample:
    at: float
    latency: float
    code: int


class Worker:
    """One client of the load: ``start(stop)`` calls through ``url`` in a thread until ``stop`` is set."""

    def __init__(self, n: int, url: str, pace: float = 0.05) -> None:
        self.name_ = f"w{n}"
        self.url, self.pace = url, pace
        self.thread: threading.Thread | None = None
        # Signed with the session's key, as the replay guard's figures need; every call differs
        # (its parameters number it), so none is refused as a replay of the one before.
        self.client = TotoClient(url, hmac_mode="session_key", retries=0, timeout=5)
        self.user = unique_user()
        self.samples: list[Sample] = []
        self.published: list[tuple[str, int, float]] = []  # (publisher, seq, acknowledged at)
        self.seq = 0
        self.last_count = 0
        self.forced_logins = 0
        #: The answers that ended a session (what forced each new login).
        self.ended_by: Counter[str] = Counter()
        self.lost = 0
        self.calls = 0
        self.failure: BaseException | None = None
        self.lock = threading.Lock()

    def sign_in(self, create: bool = False, seconds: float = 60) -> None:
        """Create the account (``create``) or sign in again, retrying what the deployment could not
        take (1013, no answer) until ``seconds`` pass; any other refusal fails the worker."""
        deadline = time.monotonic() + seconds
        answers: list[int] = []
        while True:
            try:
                if create:
                    self.client.create(self.user, PASSWORD)
                else:
                    self.client.login(self.user, PASSWORD)
                return
            except (TotoClientError, OSError, http.client.HTTPException) as error:
                self.client.close()
                code = code_of(error)
                answers.append(code)
                if code == ERROR_USER_ID_EXISTS and create:
                    create = False  # the create ran though its answer was lost: the account exists
                elif code not in (NO_ANSWER, ERROR_SERVICE_UNAVAILABLE) or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name_} ({self.user}) could not sign in again: answers {answers}, "
                        f"its session ended by {dict(self.ended_by)}, last count {self.last_count}"
                    ) from error
                time.sleep(0.2)

    def _timed(self, method: str, parameters: Any = None) -> tuple[Any, int]:
        started = time.monotonic()
        try:
            result, code = self.client.call(method, parameters), 0
        except (TotoClientError, OSError, http.client.HTTPException) as error:
            self.client.close()
            result, code = None, code_of(error)
        with self.lock:
            self.samples.append(Sample(started, time.monotonic() - started, code))
        return result, code

    def step(self) -> int:
        self.calls += 1
        if self.calls % 4 == 0:
            self.seq += 1
            result, code = self._timed("feed.publish", {"p": self.name_, "s": self.seq})
            if code == 0:
                with self.lock:
                    self.published.append((self.name_, self.seq, time.monotonic()))
        else:
            result, code = self._timed("counter.increment", {"n": self.calls})
            if code == 0:
                self.last_count = max(self.last_count, int(result))
        if code in ENDED:
            with self.lock:
                self.forced_logins += 1
                self.ended_by[f"{code} ({'publish' if self.calls % 4 == 0 else 'increment'})"] += 1
            self.sign_in()
            self.last_count = 0
        return code

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self.run, args=(stop,), name=self.name_, daemon=True)
        self.thread.start()

    def join(self, seconds: float = 30) -> None:
        if self.thread is not None:
            self.thread.join(seconds)
            if self.thread.is_alive():
                raise AssertionError(f"{self.name_} did not stop within {seconds:g} s")
        if self.failure is not None:
            raise AssertionError(f"{self.name_} failed: {self.failure!r}") from self.failure

    def successes_since(self, at: float) -> int:
        with self.lock:
            return sum(1 for sample in self.samples if sample.at >= at and sample.code == 0)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                code = self.step()
                stop.wait(self.pace if code == 0 else self.pace * 2)
        except BaseException as error:  # reported by the suite
            self.failure = error

    def check_writes(self, seconds: float = 30) -> int:
        """After a fault (the worker stopped): one more increment must count every acknowledged
        one; returns how many acknowledged increments the session lost, and starts anew from it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.calls += 1
            result, code = self._timed("counter.increment", {"n": self.calls})
            if code == 0:
                lost = max(0, self.last_count - (int(result) - 1))
                self.last_count = int(result)
                return lost
            if code in ENDED:
                self.forced_logins += 1
                self.sign_in()
                lost, self.last_count = self.last_count, 0
                return lost
            time.sleep(0.2)
        raise AssertionError(f"{self.name_}: no increment answered within {seconds:g} s after the fault")


class Subscriber(threading.Thread):
    """Reads ``feed.since`` from every server every ``every`` seconds."""

    def __init__(self, urls: dict[str, str], stop: threading.Event, every: float = 0.3) -> None:
        super().__init__(name="subscriber", daemon=True)
        self.urls, self.stop, self.every = urls, stop, every
        self.clients = {host: TotoClient(url, retries=0, timeout=3) for host, url in urls.items()}
        self.boot: dict[str, str] = {}
        self.received: dict[str, list[tuple[str, int]]] = {host: [] for host in urls}
        self.lock = threading.Lock()

    def poll(self, host: str) -> None:
        client = self.clients[host]
        try:
            answer = client.call("feed.since", {"from": len(self.received[host])})
        except (TotoClientError, OSError, http.client.HTTPException):
            client.close()
            return
        with self.lock:
            if self.boot.get(host) != answer["boot"]:
                self.boot[host] = answer["boot"]
                self.received[host] = []
            self.received[host].extend((e["p"], int(e["s"])) for e in answer["events"])

    def poll_all(self) -> None:
        for host in self.urls:
            self.poll(host)

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll_all()
            self.stop.wait(self.every)

    def snapshot(self) -> tuple[dict[str, str], dict[str, list[tuple[str, int]]]]:
        with self.lock:
            return dict(self.boot), {host: list(events) for host, events in self.received.items()}


def send_raw(url: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request("POST", target, body=body, headers=headers)
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


class Replay:
    """A signed request (``hmac_mode=session_key``) captured before a fault and sent once; after the
    fault it is sent again to every server and through HAProxy. Each one that ran is counted."""

    def __init__(self, lb_url: str) -> None:
        self.lb_url = lb_url
        client = TotoClient(lb_url, hmac_mode="session_key", retries=5, timeout=5)
        client.create(unique_user(), PASSWORD)
        self.body = json.dumps({"method": "counter.increment", "parameters": {}}).encode()
        self.target, self.headers = client._prepare("POST", "/", self.body, None, None, True)
        answer = send_raw(lb_url, self.target, self.headers, self.body)
        assert answer.get("result") == 1, f"the captured request did not run once: {answer}"

    def accepted(self, urls: list[str]) -> int:
        ran = 0
        for url in [*urls, self.lb_url]:
            try:
                answer = send_raw(url, self.target, self.headers, self.body)
            except (OSError, ValueError, http.client.HTTPException):
                continue
            ran += "result" in answer
        return ran


def login_limit_checked(lb_url: str, attempts: int) -> int:
    """Wrong passwords for a fresh user through HAProxy (round robin: every server takes some):
    how many were checked (answered "wrong password") before the deployment said 1014."""
    name = unique_user()
    TotoClient(lb_url, hmac_mode="session_key", retries=5, timeout=5).create(name, PASSWORD)
    checked = 0
    for _ in range(attempts):
        try:
            TotoClient(lb_url, hmac_mode="session_key", retries=3, timeout=5).login(name, "wrong")
        except TotoClientError as error:
            checked += error.code == ERROR_USER_NOT_FOUND
    return checked


@dataclass
class Figures:
    """One fault's row of the table."""

    fault: str
    stack: str
    calls: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    writes_lost: int = 0
    forced_logins: int = 0
    published: int = 0
    events_lost: int = 0
    events_duplicated: int = 0
    events_reordered: int = 0
    servers_counted: int = 0
    contract: str = ""
    replays_accepted: int = 0
    login_checked: int = 0
    login_limit: int = 0
    servers: int = 3
    error_window: float = 0.0
    p99_ms: float = 0.0
    cuts_calls: bool = False
    #: What happened besides the fault and is no failure of Toto's (printed, not asserted).
    info: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        errors = ", ".join(f"{'no answer' if c == NO_ANSWER else c}: {n}" for c, n in sorted(self.codes.items()) if c)
        return [
            self.fault,
            self.stack,
            str(self.calls),
            errors or "-",
            str(self.writes_lost),
            str(self.forced_logins),
            f"{self.events_lost}/{self.events_duplicated}/{self.events_reordered} of {self.published} "
            f"on {self.servers_counted}",
            self.contract,
            str(self.replays_accepted),
            f"{self.login_checked} (L={self.login_limit}, NxL={self.servers * self.login_limit})",
            f"{self.error_window:.1f}",
            f"{self.p99_ms:.0f}",
        ]


HEADER = [
    "fault",
    "stack",
    "calls",
    "errors (code: n)",
    "acked writes lost",
    "forced logins",
    "events lost/dup/reordered",
    "bus contract",
    "replays accepted",
    "logins checked",
    "error window s",
    "p99 ms",
]


def table(rows: list[Figures]) -> str:
    """A Markdown table of the rows."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(f.row()) + " |" for f in rows]
    return "\n".join(lines)


def event_figures(
    published: list[tuple[str, int, float]],
    received: dict[str, list[tuple[str, int]]],
    counted: list[str],
) -> tuple[int, int, int]:
    """Lost, duplicated and reordered events on the ``counted`` servers: every acknowledged
    publish should arrive once on each, and each publisher's in its order."""
    expected = {(p, s) for p, s, _ in published}
    lost = duplicated = reordered = 0
    for host in counted:
        arrived = [event for event in received[host] if event in expected]
        seen = Counter(arrived)
        lost += len(expected - set(seen))
        duplicated += sum(n - 1 for n in seen.values())
        last: dict[str, int] = {}
        for p, s in arrived:
            if s < last.get(p, 0):
                reordered += 1
            last[p] = max(s, last.get(p, 0))
    return lost, duplicated, reordered


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
