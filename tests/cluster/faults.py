"""The faults, one at a time and healed before the next, and the run that measures each.

A stack is the servers' storage and bus: ``redis`` (Sentinel for both, ``redis_wait_replicas=1``
and ``min-replicas-to-write 1``), ``postgres+nats`` (PostgreSQL storage, NATS JetStream bus) and
``postgres`` (PostgreSQL for both, LISTEN/NOTIFY). For each fault: a baseline of load, the fault,
its hold, the heal, then the load again until every worker has answers again; then the figures
(``tests.cluster.load.Figures``). ``python -m tests.cluster.faults`` runs the full table.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.cluster.load import (
    NO_ANSWER,
    Figures,
    Replay,
    Subscriber,
    Worker,
    event_figures,
    login_limit_checked,
    p99,
    table,
)
from tests.cluster.net import Lan
from tests.cluster.rig import LOGIN_LIMIT, TOTO_HOSTS, Rig, Timeout, wait_for

WORKERS = 6


#: The Redis stack without the knob: writes are acknowledged by the primary alone.
NO_WAIT = "redis, no WAIT"


def stack_options(rig: Rig, stack: str) -> dict[str, Any]:
    if stack in ("redis", NO_WAIT):
        wait = stack == "redis"
        # The knob's other half is Redis's own: a primary without a replica refuses writes.
        rig.redis.min_replicas_to_write(1 if wait else 0)
        return {
            "database": "redis",
            "database_url": rig.redis.url(),
            "event_bus": "redis",
            "redis_prefix": "cluster:" if wait else "cluster-nowait:",
            "redis_timeout": 1.0,
            "redis_wait_replicas": 1 if wait else 0,
        }
    if stack == "postgres+nats":
        return {
            "database": "postgres",
            "database_url": rig.postgres.url(),
            "sql_timeout": 2.0,
            "event_bus": "nats",
            "event_url": rig.nats.url(),
            "nats_jetstream": True,
        }
    if stack == "postgres":
        return {
            "database": "postgres",
            "database_url": rig.postgres.url(),
            "sql_timeout": 2.0,
            "event_bus": "postgres",
            "sql_table_prefix": "pgbus_",
        }
    raise ValueError(stack)


#: What each stack's bus promises (``Delivery`` of the bus, its README): all three keep a history,
#: so a server that missed events reads them back; a Redis failover that dropped the last writes
#: starts a new epoch, a gap the bus logs.
CONTRACTS = {
    "redis": "at-least-once, bus order",
    NO_WAIT: "at-least-once, bus order",
    "postgres+nats": "at-least-once, bus order",
    "postgres": "at-least-once, bus order",
}


@dataclass
class Fault:
    name: str
    stack: str
    inject: Callable[[Rig], Any]
    heal: Callable[[Rig, Any], None]
    #: Seconds the fault lasts before the heal (0: the inject itself is the whole fault).
    hold: float
    #: The host whose server the fault restarts (its events are not counted for the fault).
    restarts: str | None = None
    #: The fault can cut calls in flight (a server or its link): some get no answer at all.
    cuts_calls: bool = False


def kill_server(rig: Rig) -> None:
    rig.servers["h1"].kill()


def restart_server(rig: Rig, _: Any) -> None:
    rig.start_server("h1")
    rig.wait_server("h1")


def link_down(rig: Rig) -> None:
    rig.lan.link("h2", up=False)


def link_up(rig: Rig, _: Any) -> None:
    rig.lan.link("h2", up=True)


def loss_on(rig: Rig) -> None:
    rig.lan.loss("h3", 0.2)


def loss_off(rig: Rig, _: Any) -> None:
    rig.lan.loss("h3", 0)


def delay_on(rig: Rig) -> None:
    rig.h1_proxy.delay(0.2)


def delay_off(rig: Rig, _: Any) -> None:
    rig.h1_proxy.restore()


def kill_redis_primary(rig: Rig) -> int:
    old = rig.redis.primary_port()
    rig.redis.nodes[old].kill()
    # Every Sentinel, not one: the node comes back empty (no persistence here), and a server that
    # asked a Sentinel still naming it would read the empty node (Redis's own warning about
    # restarting a primary without persistence before the failover).
    wait_for(lambda: rig.redis.all_name_another_primary(old), 40, "the Sentinels did not fail over", rig.redis.logs)
    return old


def rejoin_redis(rig: Rig, old: int) -> None:
    rig.redis.rejoin(old)
    rig.redis.wait_settled(60)


def stop_redis(rig: Rig) -> int:
    port = rig.redis.primary_port()
    rig.redis.nodes[port].send(signal.SIGSTOP)
    return port


def continue_redis(rig: Rig, port: int) -> None:
    rig.redis.nodes[port].send(signal.SIGCONT)
    rig.redis.wait_settled(90)


def restart_postgres(rig: Rig) -> None:
    rig.postgres.restart()


def restart_nats(rig: Rig) -> None:
    rig.nats.restart()


def nothing(rig: Rig, _: Any) -> None:
    return None


FAULTS = [
    Fault("SIGKILL a server", "redis", kill_server, restart_server, 3, restarts="h1", cuts_calls=True),
    Fault("a server's link down 5 s", "redis", link_down, link_up, 5, cuts_calls=True),
    Fault("20% packet loss on a host 8 s", "redis", loss_on, loss_off, 8, cuts_calls=True),
    Fault("200 ms delay on a link 6 s", "redis", delay_on, delay_off, 6, cuts_calls=True),
    Fault("SIGKILL the Redis primary", "redis", kill_redis_primary, rejoin_redis, 0),
    Fault("SIGSTOP the Redis primary 5 s", "redis", stop_redis, continue_redis, 5),
    Fault("SIGKILL the Redis primary", NO_WAIT, kill_redis_primary, rejoin_redis, 0),
    Fault("SIGKILL a server", "postgres+nats", kill_server, restart_server, 3, restarts="h1", cuts_calls=True),
    Fault("restart PostgreSQL", "postgres+nats", restart_postgres, nothing, 0),
    Fault("restart NATS", "postgres+nats", restart_nats, nothing, 0),
    Fault("restart PostgreSQL", "postgres", restart_postgres, nothing, 0),
]
SHORT = [FAULTS[0], FAULTS[4]]


class Run:
    """The load and the subscriber on one stack; ``measure(fault)`` gives its row."""

    def __init__(self, rig: Rig, stack: str) -> None:
        self.rig, self.stack = rig, stack
        rig.start_servers(stack_options(rig, stack))
        self.workers = [Worker(n, rig.lb_url) for n in range(WORKERS)]
        for worker in self.workers:
            worker.sign_in(create=True)
        self.subscriber = Subscriber({host: rig.server_url(host) for host in TOTO_HOSTS}, threading.Event())
        self.subscriber.start()
        self.ended_before: Counter[str] = Counter()
        wait_for(
            lambda: len(self.subscriber.snapshot()[0]) == len(TOTO_HOSTS), 30, "the subscriber reached every server"
        )

    def close(self) -> None:
        self.subscriber.stop.set()
        self.subscriber.join(10)

    def until_answering(self, since: float, calls: int, seconds: float, what: str) -> None:
        wait_for(
            lambda: all(w.successes_since(since) >= calls for w in self.workers),
            seconds,
            f"{what}: the load did not get {calls} answers per client",
            self.rig.logs,
        )

    def measure(self, fault: Fault) -> Figures:
        rig = self.rig
        figures = Figures(fault.name, self.stack, login_limit=LOGIN_LIMIT, servers=len(TOTO_HOSTS))
        figures.cuts_calls = fault.cuts_calls
        figures.contract = CONTRACTS[self.stack]
        if self.stack in ("redis", NO_WAIT):
            rig.redis.wait_settled(90)  # the last fault is healed in Redis too: a replica in sync
        failovers = rig.redis.failovers()
        replay = Replay(rig.lb_url)
        logins_before = sum(w.forced_logins for w in self.workers)
        published_before = [len(w.published) for w in self.workers]
        boots_before, _ = self.subscriber.snapshot()
        stop = threading.Event()
        begun = time.monotonic()
        for worker in self.workers:
            worker.start(stop)
        try:
            self.until_answering(begun, 10, 60, f"{fault.name}: before the fault")
            injected = time.monotonic()
            state = fault.inject(rig)
            stop.wait(fault.hold)  # how long the fault lasts (not a wait for a condition)
            fault.heal(rig, state)
            rig.wait_balanced(90)
            healed = time.monotonic()
            self.until_answering(healed, 10, 60, f"{fault.name}: after the heal")
        finally:
            stop.set()
            for worker in self.workers:
                worker.join()
        ended = time.monotonic()
        figures.writes_lost = sum(w.check_writes() for w in self.workers)
        figures.forced_logins = sum(w.forced_logins for w in self.workers) - logins_before
        ended_by: Counter[str] = sum((w.ended_by for w in self.workers), Counter())
        if figures.forced_logins:
            figures.notes.append(f"sessions ended by: {dict(ended_by - self.ended_before)}")
        self.ended_before = ended_by

        samples = [s for w in self.workers for s in w.samples if begun <= s.at <= ended]
        figures.calls = len(samples)
        figures.codes.update(s.code for s in samples)
        failed = [s for s in samples if s.code != 0]
        if failed:
            figures.error_window = max(s.at + s.latency for s in failed) - min(s.at for s in failed)
        figures.p99_ms = 1000 * p99([s.latency for s in samples if s.at >= injected])

        published = [e for w, n in zip(self.workers, published_before) for e in w.published[n:]]
        figures.published = len(published)
        expected = {(p, s) for p, s, _ in published}

        def counted() -> list[str]:
            boots, _ = self.subscriber.snapshot()
            return [h for h in TOTO_HOSTS if h != fault.restarts and boots.get(h) == boots_before.get(h)]

        def all_arrived() -> bool:
            _, received = self.subscriber.snapshot()
            return all(expected <= set(received[h]) for h in counted())

        try:
            wait_for(all_arrived, 30, "not every acknowledged event arrived")
        except Timeout:
            figures.notes.append("some acknowledged events never arrived within 30 s")
        _, received = self.subscriber.snapshot()
        hosts = counted()
        figures.servers_counted = len(hosts)
        figures.events_lost, figures.events_duplicated, figures.events_reordered = event_figures(
            published, received, hosts
        )
        switched = rig.redis.failovers() - failovers
        if switched != (1 if fault.inject in (kill_redis_primary, stop_redis) else 0):
            # A loaded machine can stall Redis past down-after-milliseconds: the figures must hold anyway.
            figures.info.append(f"the Sentinels switched the primary {switched} times during this fault")
        figures.replays_accepted = replay.accepted([rig.server_url(h) for h in TOTO_HOSTS])
        figures.login_checked = login_limit_checked(rig.lb_url, 3 * LOGIN_LIMIT)
        for host, server in rig.servers.items():
            log = server.output(400000)
            if "Traceback" in log:
                raised = re.findall(r"^\S*(?:Error|Exception)\b.*$", log, re.M)
                figures.notes.append(f"a traceback in {host}'s log: {raised[-3:]}")
        return figures


def run_faults(faults: list[Fault], services: tuple[str, ...], report: Callable[[Figures], None]) -> list[Figures]:
    """Make the network and the deployment, run ``faults`` (grouped by stack, in order), remove everything."""
    rows: list[Figures] = []
    with Lan([*TOTO_HOSTS, "data"]) as lan:
        rig = Rig(lan)
        try:
            if "redis" in services:
                rig.redis.start()
            if "postgres" in services:
                rig.postgres.start()
            if "nats" in services:
                rig.nats.start()
            rig.start_balancer()
            stacks = list(dict.fromkeys(f.stack for f in faults))
            for stack in stacks:
                run = Run(rig, stack)
                try:
                    for fault in (f for f in faults if f.stack == stack):
                        figures = run.measure(fault)
                        report(figures)
                        rows.append(figures)
                finally:
                    run.close()
        finally:
            rig.stop()
    return rows


def main() -> int:
    started = time.monotonic()
    rows = run_faults(FAULTS, ("redis", "postgres", "nats"), lambda f: print(table([f]).splitlines()[-1], flush=True))
    print(f"\nThe fault table ({time.monotonic() - started:.0f} s):\n")
    print(table(rows))
    for row in rows:
        for note in row.notes + row.info:
            print(f"- {row.fault} ({row.stack}): {note}")
    return 0


__all__ = ["FAULTS", "NO_ANSWER", "NO_WAIT", "SHORT", "main", "run_faults"]

if __name__ == "__main__":
    sys.exit(main())
