"""The metrics of one serving process, and the page that shows them.

Imported at startup, never at plugin load, because prometheus-client decides on import
whether values live in this process or in files shared by a process group
(``PROMETHEUS_MULTIPROC_DIR``), and a group's directory is known only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import platform
import re
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as multiprocess_mode
from toto.exceptions import PluginError, StorageUnavailable
from toto.pidfile import process_alive

#: Request and storage latencies, in seconds: from 0.5 ms (a Redis round trip) to 10 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Calls in one batch (at most ``max_batch``, 100 by default).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
#: The ``method`` label of a batch request, and of a request that named no method that exists:
#: never a method name (those have no parentheses), and never what a client sent, so a
#: client cannot grow the label set.
BATCH, UNKNOWN = "(batch)", "(unknown)"
#: The storage interface calls that are timed.
STORAGE_OPERATIONS = (
    "ping",
    "create_account",
    "get_account",
    "update_account",
    "store_session",
    "load_session",
    "touch_session",
    "save_state",
    "delete_session",
    "delete_user_sessions",
    "purge_expired",
)

_PID_FILE = re.compile(r"_(\d+)\.db\Z")


class Metrics:
    """Every metric of one serving process, by the hooks that feed them (``toto_prometheus.plugin``).

    Labelled children are cached per label values, so a request costs dictionary
    lookups and the metric updates themselves.
    """

    def __init__(self, server: Any, directory: str | None) -> None:
        self.server = server
        #: The group's metrics directory (multiprocess mode), or None for a lone process.
        self.directory = directory
        if self.directory is not None and not _values_in_files():
            raise PluginError(
                "toto-prometheus: prometheus_client was imported before this --processes group could switch it "
                "to multiprocess mode; set PROMETHEUS_MULTIPROC_DIR to an empty directory before starting"
            )
        if self.directory is not None:
            _forget_dead_processes(self.directory)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "toto_requests",
            "Requests for a method or a batch, by method and the error code answered (empty: success)",
            ["method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "toto_request_duration_seconds",
            "Time from the start of a request to its answer, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "toto_requests_in_flight", "Requests being served", registry=r, multiprocess_mode="livesum"
        )
        self.calls = Counter(
            "toto_calls",
            "Method invocations (each batch entry too), by method, outcome (ok, error) and error code",
            ["method", "outcome", "code"],
            registry=r,
        )
        self.batch_calls = Histogram("toto_batch_size", "Calls in one batch request", buckets=BATCH_BUCKETS, registry=r)
        self.storage_seconds = Histogram(
            "toto_storage_duration_seconds",
            "Storage round trips as a request waits for them, by operation (load_session: the session load)",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.storage_errors = Counter(
            "toto_storage_errors",
            "Storage calls that failed because the database could not be reached (answered 1013)",
            ["operation"],
            registry=r,
        )
        self.events_published = Counter(
            "toto_events_published", "Events this process sent, by broadcast (true, false)", ["broadcast"], registry=r
        )
        self.events_delivered = Counter(
            "toto_events_delivered", "Events this process received from the event bus", registry=r
        )
        build = Gauge(
            "toto_build_info",
            "Versions and configuration of the server (always 1)",
            ["version", "python", "database", "event_bus", "hmac_mode", "event_loop"],
            registry=r,
            multiprocess_mode="max",
        )
        o = server.options
        build.labels(
            _version("toto-core"), platform.python_version(), o.database, o.event_bus, o.hmac_mode, server.event_loop
        ).set(1)
        self._requests: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._calls: dict[tuple[str, str], Any] = {}
        self._published = {True: self.events_published.labels("true"), False: self.events_published.labels("false")}

    # -- what the hooks call (the request path: keep it short) ---------------------------------
    def request_finished(self, method: str | None, batch: int | None, error: Any, seconds: float) -> None:
        if batch is not None:
            label = BATCH
            self.batch_calls.observe(batch)
        else:
            label = method or UNKNOWN
        code = "" if error is None else str(error.get("code", ""))
        key = (label, code)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (self.requests.labels(label, code), self.request_seconds.labels(label))
        children[0].inc()
        children[1].observe(seconds)
        self.in_flight.dec()

    def call_finished(self, method: str, error: Any) -> None:
        code = "" if error is None else str(error.get("code", ""))
        key = (method, code)
        child = self._calls.get(key)
        if child is None:
            child = self._calls[key] = self.calls.labels(method, "error" if code else "ok", code)
        child.inc()

    def event_published(self, broadcast: bool) -> None:
        self._published[bool(broadcast)].inc()

    # -- the page -------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition of this process, or of the whole group in multiprocess mode.

        Blocking (it reads the group's files): call it off the event loop (``scrape``).
        """
        if self.directory is not None:
            group = CollectorRegistry()
            multiprocess_mode.MultiProcessCollector(group, path=self.directory)
            return bytes(prometheus_client.generate_latest(group))
        # A lone process: Toto's metrics, then the default registry (process, GC, and the
        # application's own metrics).
        own = prometheus_client.generate_latest(self.registry)
        return bytes(own + prometheus_client.generate_latest(prometheus_client.REGISTRY))

    async def scrape(self) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self.render)


class TimedStorage:
    """Stands in for the server's storage and times each call of the storage interface.

    Everything else (``db``, a backend's own attributes) is the wrapped storage's.
    """

    def __init__(self, storage: Any, metrics: Metrics) -> None:
        self.__dict__["_storage"] = storage
        for operation in STORAGE_OPERATIONS:
            call = getattr(storage, operation, None)
            if call is not None:
                timed = _timed(
                    call, metrics.storage_seconds.labels(operation), metrics.storage_errors.labels(operation)
                )
                self.__dict__[operation] = timed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._storage, name, value)

    def __repr__(self) -> str:
        return f"<TimedStorage {self._storage!r}>"


def _timed(call: Callable[..., Awaitable[Any]], seconds: Any, errors: Any) -> Callable[..., Awaitable[Any]]:
    observe = seconds.observe
    clock = time.perf_counter

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await call(*args, **kwargs)
        except StorageUnavailable:
            errors.inc()
            raise
        finally:
            observe(clock() - started)

    return timed


def _values_in_files() -> bool:
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes of the group that died (a restarted child, say),
    so ``toto_requests_in_flight`` counts only processes that serve."""
    pids = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        found = _PID_FILE.search(path)
        if found:
            pids.add(int(found.group(1)))
    for pid in pids:
        if pid != os.getpid() and not process_alive(pid):
            multiprocess_mode.mark_process_dead(pid, directory)


def _version(distribution: str) -> str:
    with contextlib.suppress(PackageNotFoundError):
        return version(distribution)
    return "unknown"
