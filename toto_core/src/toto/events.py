"""Events between requests and between servers (PROTOCOL.md section 8).

``EventManager.instance().send(name, args)`` serializes ``args`` with the safe state
serializer and publishes them on the configured bus (``event_bus``): ``local`` (this
process), ``machine`` (every process using the same directory; what a ``--processes``
group uses), or a plugin's such as ``redis``. Every process that receives the event
calls the handlers registered for ``name``. As in the original, a handler fires once
and is then removed, unless it was registered with ``persist=True``. A handler
registered through ``handler.register_event_handler`` belongs to its request and is
dropped when that request finishes or its connection closes, so long polls leave
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toto.eventbus import AT_MOST_ONCE, MAX_EPOCH, Delivery, Event, EventBus, EventCallback, Position

if TYPE_CHECKING:
    import pluggy

    from toto.serializers import Serializer

log = logging.getLogger("toto.events")


class LocalBus(EventBus):
    """In-process bus: events reach this process only, in the order they were sent. Its
    stream is this process's: a new epoch each start, no history kept."""

    delivery = Delivery(
        guarantee=AT_MOST_ONCE,
        sequence="bus",
        history=False,
        reconnect="nothing to reconnect: the bus is this process, and its events end with it",
    )

    def __init__(self, options: Any = None) -> None:
        self._callbacks: list[EventCallback] = []
        self._epoch = secrets.token_hex(8)
        self._seq = 0

    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> Position | None:
        position = None
        if broadcast:
            self._seq += 1
            position = Position(self._epoch, self._seq)
        loop = asyncio.get_running_loop()
        for callback in self._callbacks:
            loop.call_soon(callback, name, payload, dict(metadata) if metadata else None, position)
        return position

    async def position(self) -> Position | None:
        return Position(self._epoch, self._seq) if self._seq else None

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def ping(self) -> bool:
        """Always up: it is this process."""
        return True

    async def close(self) -> None:
        self._callbacks.clear()


class EventManager:
    """Dispatches events to registered handlers; ``send`` goes through the configured bus."""

    _instance: EventManager | None = None

    def __init__(self) -> None:
        self.bus: EventBus | None = None
        self.serializer: Serializer | None = None
        self._handlers: dict[str, dict[int, tuple[Callable[..., Any], Any, bool, bool]]] = {}
        #: The newest broadcast position this server dispatched (None before the first, and on a
        #: bus whose ``delivery.sequence`` is ``"publisher"``: its positions are no one stream).
        self.last_position: Position | None = None
        self._ids = itertools.count(1)
        # Coroutine handlers run as tasks; holding them keeps them from being collected mid-run.
        self._tasks: set[asyncio.Future[Any]] = set()
        # The plugins' toto_event_sending / toto_event_received, or None when none implements them.
        self._sending: Any = None
        self._received: Any = None

    @classmethod
    def instance(cls) -> EventManager:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    async def start(self, bus: EventBus, serializer: Serializer, hook: pluggy.HookRelay | None = None) -> None:
        self.bus = bus
        self.serializer = serializer
        if hook is not None:
            self.use_hooks(hook)
        await bus.open()
        bus.subscribe(self._receive)

    def use_hooks(self, hook: pluggy.HookRelay) -> None:
        """Call the event hooks that have implementations (again after a plugin registered more)."""
        self._sending = hook.toto_event_sending if hook.toto_event_sending.get_hookimpls() else None
        self._received = hook.toto_event_received if hook.toto_event_received.get_hookimpls() else None

    async def stop(self) -> None:
        if self.bus is not None:
            await self.bus.close()
            self.bus = None
        self._sending = self._received = None

    def register_handler(
        self,
        name: str,
        fn: Callable[..., Any],
        run_on_main_loop: bool = True,
        request_handler: Any = None,
        persist: bool = False,
        positioned: bool = False,
    ) -> tuple[str, int]:
        """Call ``fn(args)`` for the next event ``name`` (every one with ``persist=True``);
        returns a token for ``remove_handler``.

        As in the original, a handler fires once and is then removed, unless ``persist``.
        ``run_on_main_loop=False`` runs ``fn`` in the loop's default thread pool (for
        blocking work; it must not touch the request). A handler tied to
        ``request_handler`` never fires once that request finished. ``positioned=True`` calls
        ``fn(args, position)`` with the event's ``Position`` on its bus (None for one without).
        """
        token = next(self._ids)
        if not run_on_main_loop:
            fn = _in_thread(fn)
        self._handlers.setdefault(name, {})[token] = (fn, request_handler, persist, positioned)
        return (name, token)

    def remove_handler(self, sig: tuple[str, int]) -> None:
        name, token = sig
        handlers = self._handlers.get(name)
        if handlers is not None:
            handlers.pop(token, None)
            if not handlers:
                del self._handlers[name]

    def handler_count(self, name: str | None = None) -> int:
        if name is not None:
            return len(self._handlers.get(name, ()))
        return sum(len(h) for h in self._handlers.values())

    def send(self, name: str, args: Any, broadcast: bool = True) -> asyncio.Future[Position | None]:
        """Send ``args`` to every handler of ``name`` on every server (``broadcast=False``: one
        server); the future answers the event's position on its bus (None for one server's)."""
        if self.bus is None or self.serializer is None:
            raise RuntimeError("the event manager is not started (the server is not running)")
        payload = self.serializer.encode(args)
        metadata: dict[str, str] = {}
        if self._sending is not None:
            self._sending(name=name, broadcast=broadcast, metadata=metadata)
        if metadata:
            future = asyncio.ensure_future(self.bus.publish(name, payload, broadcast, metadata))
        else:
            future = asyncio.ensure_future(self.bus.publish(name, payload, broadcast))
        # Callers often fire and forget; a failed publish must still be seen in the log.
        future.add_done_callback(lambda f: _log_failed_send(name, f))
        return future

    async def recover(self, since: Position, names: Collection[str], limit: int, until: Position | None) -> Recovery:
        """The broadcasts named ``names`` that came after ``since``, from the bus's history,
        for a subscriber that was away (a socket resubscribing after a reconnect).

        ``until`` is ``last_position`` when the subscriber's handlers were registered: what
        came after it reaches them live, so the history is read up to it (pages may read a
        little past it; the subscriber drops what it hears twice by position). At most
        ``limit`` events of the history are read, of every name; when more stand between
        ``since`` and ``until``, or the bus keeps no history, or ``since`` is of another
        epoch or older than the history, the recovery is not complete: there is a gap.
        """
        if until is not None and since.epoch == until.epoch and since.seq >= until.seq:
            return Recovery([], True, since)  # nothing after since reached this server yet: it comes live
        bus, serializer = self.bus, self.serializer
        if bus is None or serializer is None:
            raise RuntimeError("the event manager is not started (the server is not running)")
        if limit <= 0 or not bus.delivery.history or bus.delivery.sequence != "bus":
            return Recovery([], False, since)
        wanted = set(names)
        found: list[tuple[str, Any, Position]] = []
        cursor, complete, read, first = since, True, 0, True
        while True:
            if read >= limit:
                complete = False  # the cap: what stands between here and the live events is a gap
                break
            asked = min(RECOVERY_PAGE, limit - read)
            replay = await bus.replay(cursor, asked)
            if first and not replay.complete:
                complete = False
            first = False
            fresh = [e for e in replay.events if e.position is not None and e.position.follows(cursor)]
            for event in fresh:
                assert event.position is not None
                cursor = event.position
                read += 1
                if event.name in wanted:
                    found.append((event.name, _decoded(serializer, event), event.position))
            if len(replay.events) < asked or not fresh:
                break
            if until is not None and cursor.epoch == until.epoch and cursor.seq >= until.seq:
                break
        return Recovery([f for f in found if f[1] is not _UNREADABLE], complete, cursor)

    def _handler_done(self, name: str, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler for %r failed", name, exc_info=task.exception())

    def _receive(
        self, name: str, payload: bytes, metadata: Mapping[str, str] | None = None, position: Position | None = None
    ) -> None:
        if position is not None and self.bus is not None and self.bus.delivery.sequence == "bus":
            self.last_position = position
        received = self._received
        if received is None:
            self._dispatch(name, payload, position)
            return
        with contextlib.ExitStack() as stack:
            for context in received(name=name, metadata=metadata or {}):
                if context is not None:
                    stack.enter_context(context)
            self._dispatch(name, payload, position)

    def _dispatch(self, name: str, payload: bytes, position: Position | None = None) -> None:
        handlers = self._handlers.get(name)
        if not handlers:
            return
        assert self.serializer is not None
        try:
            args = self.serializer.decode_state(payload)
        except Exception:
            log.warning("dropped event %r: its payload could not be decoded", name)
            return
        for token, (fn, request_handler, persist, positioned) in list(handlers.items()):
            if token not in handlers:
                continue  # removed by a handler that ran before it in this loop
            finished = request_handler is not None and request_handler._finished
            if finished or not persist:
                self.remove_handler((name, token))
            if finished:
                continue
            try:
                result = fn(args, position) if positioned else fn(args)
                if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(functools.partial(self._handler_done, name))
            except Exception:
                log.exception("event handler for %r failed", name)


#: Events of the history one ``EventManager.recover`` asks its bus for at a time.
RECOVERY_PAGE = 100
_UNREADABLE = object()


@dataclass(frozen=True)
class Recovery:
    """What ``EventManager.recover`` found: ``events`` as ``(name, args, position)``, oldest
    first; whether they are all that came after ``since`` (``complete``); and ``position``,
    the newest position read (``since`` when none was): what follows it comes live."""

    events: list[tuple[str, Any, Position]]
    complete: bool
    position: Position


def parse_position(value: Any) -> Position:
    """A position as it travels in socket frames, ``{"epoch": str, "seq": int}``;
    ``ValueError`` when ``value`` is not one."""
    if not isinstance(value, dict) or set(value) != {"epoch", "seq"}:
        raise ValueError('a position is {"epoch": text, "seq": integer}')
    epoch, seq = value["epoch"], value["seq"]
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH or not epoch.isascii():
        raise ValueError(f"a position's epoch is 1 to {MAX_EPOCH} ASCII characters")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise ValueError("a position's seq is a whole number from 0")
    return Position(epoch, seq)


def position_frame(position: Position) -> dict[str, Any]:
    """A position as it travels in socket frames (``parse_position`` reads it back)."""
    return {"epoch": position.epoch, "seq": position.seq}


def _decoded(serializer: Serializer, event: Event) -> Any:
    try:
        return serializer.decode_state(event.payload)
    except Exception:
        log.warning("dropped event %r from the history: its payload could not be decoded", event.name)
        return _UNREADABLE


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(None, fn, *args)

    return run


def _log_failed_send(name: str, future: asyncio.Future[Position | None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("sending event %r failed: %s", name, future.exception())
