"""Load without loss: many clients, mixed calls, exact counts (issue 13).

``python bench/soak.py [--calls 100000] [--clients 50] [--databases postgres,redis] [--processes 1,2]``

For each database and process count, one server (``--processes=2`` shares its port through
``--reuse_port``) in ``session_key`` mode, and ``clients`` asyncio clients that create an
account each, then loop over signed state increments on a private session (whose answers
must count 1, 2, 3... with no gap), signed increments on a session that every client of its
group of five shares (whose final count must equal the increments acknowledged), and now
and then a logout and a login. A 1018 (the state changed in another process; retry) is
retried as the protocol tells a client to, and a 1013 (busy: the call did not run) by the
client itself; any other error, 1014 (locked out) included, is unexpected. It prints the
counts, the retries and the p50/p99 latency per row, and exits 1 when a count is off or an
unexpected error came.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "basic"
POSTGRES_URL = os.environ.get("TOTO_TEST_SOAK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOTO_TEST_SOAK_REDIS_URL", "redis://127.0.0.1:6379/0")
GROUP = 5  # clients sharing one session
CYCLE = 25  # calls between a client's logout and its next login
RETRIED = {1018}


@dataclass
class Result:
    """What one row of the soak saw."""

    database: str
    processes: int
    calls: int = 0
    acknowledged_increments: int = 0
    lost_updates: int = 0
    retries: dict[int, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

    @property
    def ok(self) -> bool:
        return not self.lost_updates and not self.unexpected

    def line(self) -> str:
        retries = ", ".join(f"{code}: {n}" for code, n in sorted(self.retries.items())) or "none"
        return (
            f"{self.database:<8} processes={self.processes}  calls={self.calls}"
            f"  increments={self.acknowledged_increments}"
            f"  lost={self.lost_updates}  unexpected={len(self.unexpected)}  retried ({retries})"
            f"  {self.calls / self.seconds if self.seconds else 0:.0f} calls/s"
            f"  p50={self.percentile(0.50):.1f} ms  p99={self.percentile(0.99):.1f} ms"
        )


class Soak:
    def __init__(self, url: str, result: Result, budget: int) -> None:
        self.url = url
        self.result = result
        self.budget = budget  # calls left to make, shared by every client
        self.nonce = itertools.count()

    def take(self) -> bool:
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    async def call(self, client: Any, method: str, parameters: dict[str, Any] | None = None) -> Any:
        """One call, retried on the codes a client is told to retry; None after an unexpected error."""
        from toto.client import TotoClientError

        parameters = dict(parameters or {}, nonce=next(self.nonce))  # no two bodies alike: no replay refusal
        result = self.result
        while True:
            started = time.perf_counter()
            try:
                answer = await client.call(method, parameters)
            except TotoClientError as error:
                result.latencies.append(time.perf_counter() - started)
                result.calls += 1
                if error.code in RETRIED:
                    result.retries[error.code] = result.retries.get(error.code, 0) + 1
                    await asyncio.sleep(0.01)
                    continue
                result.unexpected.append(f"{method}: {error.code} {error}")
                return None
            except Exception as error:  # a dropped connection, a timeout
                result.calls += 1
                result.unexpected.append(f"{method}: {type(error).__name__}: {error}")
                return None
            result.latencies.append(time.perf_counter() - started)
            result.calls += 1
            return answer

    async def client(self, number: int, shared: dict[str, Any], shared_acks: list[int]) -> None:
        from toto.client import AsyncTotoClient

        own = AsyncTotoClient(self.url, hmac_mode="session_key", timeout=60)
        user_id, password = f"soak-{uuid.uuid4().hex[:12]}", "soak password"
        if await self.call(own, "account.create", {"user_id": user_id, "password": password}) is None:
            return
        group = AsyncTotoClient(self.url, hmac_mode="session_key", timeout=60)
        group.session = shared
        count, calls_since_login = 0, 0
        while self.take():
            calls_since_login += 1
            if calls_since_login >= CYCLE:
                calls_since_login = 0
                await self.call(own, "account.logout")
                if await self.call(own, "account.login", {"user_id": user_id, "password": password}) is None:
                    return
                count = 0  # a new session counts from 0
            elif number % 2 == 0 or calls_since_login % 2:
                got = await self.call(own, "counter.increment")
                if got is None:
                    return
                count += 1
                self.result.acknowledged_increments += 1
                if got != count:
                    self.result.lost_updates += count - got if got < count else 0
                    self.result.unexpected.append(f"private session answered {got} for increment {count}")
                    count = got
            else:
                if await self.call(group, "counter.increment") is None:
                    return
                shared_acks[0] += 1
                self.result.acknowledged_increments += 1


async def run_row(url: str, result: Result, calls: int, clients: int) -> None:
    from tornado.httpclient import AsyncHTTPClient
    from toto.client import AsyncTotoClient

    AsyncHTTPClient.configure(None, max_clients=clients * 2)
    soak = Soak(url, result, calls)
    groups = []
    for _ in range((clients + GROUP - 1) // GROUP):
        owner = AsyncTotoClient(url, hmac_mode="session_key", timeout=60)
        await owner.create(f"soak-group-{uuid.uuid4().hex[:12]}", "soak password")
        groups.append((owner, [0]))
    started = time.perf_counter()
    await asyncio.gather(
        *(soak.client(n, dict(groups[n // GROUP][0].session), groups[n // GROUP][1]) for n in range(clients))
    )
    result.seconds = time.perf_counter() - started
    for owner, acks in groups:
        state = await owner.call("state.get", {"keys": ["count"]})
        stored = state.get("count") or 0
        if stored != acks[0]:
            result.lost_updates += abs(acks[0] - stored)
            result.unexpected.append(f"a shared session holds {stored} of {acks[0]} acknowledged increments")


def database_options(database: str, tag: str) -> dict[str, Any]:
    if database == "postgres":
        return {"database": "postgres", "database_url": POSTGRES_URL, "sql_table_prefix": f"soak{tag}_"}
    if database == "redis":
        return {"database": "redis", "database_url": REDIS_URL, "redis_prefix": f"toto-soak:{tag}:"}
    if database == "sqlite":
        return {"database": "sqlite", "database_url": f"sqlite:///{ROOT / 'bench' / 'results' / f'soak{tag}.db'}"}
    return {"database": database}


def clean_up(database: str, tag: str) -> None:
    """Drop what a row stored (tables, keys, files), so soaks never pile up data."""
    try:
        if database == "postgres":
            import asyncpg  # type: ignore[import-untyped]

            async def drop() -> None:
                conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql://", "postgres://"))
                try:
                    for name in ("accounts", "sessions", "guards", "schema_version"):
                        await conn.execute(f"DROP TABLE IF EXISTS soak{tag}_{name}")
                finally:
                    await conn.close()

            asyncio.run(drop())
        elif database == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"toto-soak:{tag}:*", count=1000):
                client.delete(key)
        elif database == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (ROOT / "bench" / "results" / f"soak{tag}.db{suffix}").unlink(missing_ok=True)
    except Exception as error:  # a soak's result stands even when its clean-up fails
        print(f"soak: cleaning up {database} ({tag}) failed: {error}", file=sys.stderr)


def soak(database: str, processes: int, calls: int, clients: int, password_cost: int = 10) -> Result:
    """One row: a server on ``database`` with ``processes`` processes, ``calls`` calls from ``clients`` clients."""
    from toto.testing.server import ServerProcess

    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    tag = secrets.token_hex(4)
    options = {
        **database_options(database, tag),
        "hmac_mode": "session_key",
        "password_cost": password_cost,
        "logging": "warning",
        "processes": processes,
    }
    if processes > 1:
        options["reuse_port"] = True
    result = Result(database, processes)
    server = ServerProcess(options, cwd=str(APP), startup_timeout=60)
    try:
        with server:
            time.sleep(1.0 if processes > 1 else 0)  # let every process of the group listen
            asyncio.run(run_row(server.url, result, calls, clients))
            log = server.output()
        if "Traceback" in log:
            result.unexpected.append("a traceback in the server log:\n" + log[log.index("Traceback") :][:3000])
    finally:
        clean_up(database, tag)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per row")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--databases", default="postgres,redis")
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args(argv)
    results = []
    for database in args.databases.split(","):
        for processes in (int(p) for p in args.processes.split(",")):
            result = soak(database, processes, args.calls, args.clients)
            print(result.line(), flush=True)
            for problem in result.unexpected[:10]:
                print("   ", problem)
            results.append(result)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
