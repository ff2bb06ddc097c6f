"""Background work on threads, with the original's ``TaskQueue`` and ``InstancePool``.

For short blocking jobs (a library without asyncio support, a file to write) that must
not hold up the event loop. Each ``TaskQueue`` is a ``concurrent.futures.ThreadPoolExecutor``
of ``thread_count`` threads; ``yield_task`` gives a future a coroutine awaits (``await``
in ``async def``, ``yield`` in a ``tornado.gen.coroutine``).

One departure: ``idle_timeout`` is accepted and ignored; idle threads wait for work
instead of ending (the executor's behaviour), and are ended when the process exits.
``InstancePool.await()`` is ``InstancePool.awaitable()`` (``await`` is a keyword in Python 3).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

log = logging.getLogger("toto.tasks")

__all__ = ["AwaitableInstance", "InstancePool", "TaskQueue"]


class TaskQueue:
    """Runs the tasks added to it, in order, at most ``thread_count`` at a time."""

    _queues: ClassVar[dict[str, TaskQueue]] = {}
    _queues_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, thread_count: int = 1, idle_timeout: float = 60, name: str = "TaskQueue") -> None:
        self.name = name
        self.thread_count = max(1, int(thread_count))
        self.idle_timeout = idle_timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(self.thread_count, thread_name_prefix=name)
        self._pending = 0
        self._lock = threading.Lock()

    def _submit(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            self._pending += 1
        future = self._executor.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` on a thread of this queue; an exception it raises is logged."""

        def run() -> None:
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("task %s of queue %s failed", getattr(fn, "__name__", fn), self.name)

        self._submit(run, (), {})

    def yield_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on a thread of this queue and return a future of its
        result (or exception): an asyncio future when called on the event loop, else a
        ``concurrent.futures.Future``."""
        future = self._submit(fn, args, kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return future
        return asyncio.wrap_future(future, loop=loop)

    def run(self) -> None:
        """Kept for the original's API: the queue runs as soon as a task is added."""

    def __len__(self) -> int:
        """Tasks added and not finished yet (running or waiting)."""
        return self._pending

    @classmethod
    def instance(cls, name: str, thread_count: int = 1, idle_timeout: float = 60) -> TaskQueue:
        """The shared queue called ``name``, made with ``thread_count`` threads on first use
        (later calls' other arguments are ignored)."""
        with cls._queues_lock:
            found = cls._queues.get(name)
            if found is None:
                found = cls._queues[name] = cls(thread_count, idle_timeout, name)
            return found


class InstancePool:
    """Shares one or more instances of a class that is not thread-safe between threads:
    each call takes an instance out of the pool for its duration.

    ``pool.method(...)`` calls ``method`` on a free instance; ``with pool.instance() as i``
    holds one for several calls; ``transaction(fn)`` calls ``fn(instance)``;
    ``async_transaction`` / ``await_transaction`` do that on the ``TaskQueue`` named
    ``default_queue`` (fire and forget / a future of the result).
    """

    def __init__(self, instances: Any, default_queue: str = "pool") -> None:
        pool: queue.Queue[Any] = queue.Queue()
        if isinstance(instances, Iterable) and not isinstance(instances, (str, bytes, dict)):
            for instance in instances:
                pool.put(instance)
        else:
            pool.put(instances)
        self._pool = pool
        self._default_queue = default_queue

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.instance() as instance:
                return getattr(instance, name)(*args, **kwargs)

        return call

    @contextmanager
    def instance(self) -> Iterator[Any]:
        """Hold one instance for the ``with`` block, then put it back."""
        instance = self._pool.get()
        try:
            yield instance
        finally:
            self._pool.put(instance)

    def transaction(self, function: Callable[[Any], Any]) -> Any:
        """``function(instance)`` with an instance of the pool; returns what it returns."""
        with self.instance() as instance:
            return function(instance)

    def async_transaction(self, function: Callable[[Any], Any], queue_name: str | None = None) -> None:
        """``transaction(function)`` on a ``TaskQueue`` (``queue_name`` or the pool's default)."""
        TaskQueue.instance(queue_name or self._default_queue).add_task(self.transaction, function)

    def await_transaction(self, function: Callable[[Any], Any], queue_name: str | None = None) -> Any:
        """``transaction(function)`` on a ``TaskQueue``; returns a future of its result."""
        return TaskQueue.instance(queue_name or self._default_queue).yield_task(self.transaction, function)

    def awaitable(self, queue_name: str | None = None) -> AwaitableInstance:
        """The pool as an ``AwaitableInstance``: every method call runs on a ``TaskQueue``."""
        return AwaitableInstance(self, queue_name or self._default_queue)


class AwaitableInstance:
    """Wraps ``instance`` so that each method call runs on the ``TaskQueue`` ``queue_name``
    and returns a future: ``result = await wrapped.do_something(arg)``."""

    def __init__(self, instance: Any, queue_name: str = "pool") -> None:
        self.instance = instance
        self.task_queue = TaskQueue.instance(queue_name)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        method = getattr(self.instance, name)
        return lambda *args, **kwargs: self.task_queue.yield_task(method, *args, **kwargs)
