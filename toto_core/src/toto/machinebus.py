"""The ``machine`` event bus: events between the server processes of one machine.

No extra service: each process listens on its own Unix stream socket in a shared
directory (by default beside the pidfile) and sends to every socket it finds there.
A socket whose process died is detected by a refused connection and removed, so a
crashed process never swallows a ``broadcast=False`` event.

There is no one place that could number every event, so each process numbers its own
broadcasts (``Delivery.sequence == "publisher"``: the epoch names the process's bus, a
random id of each start); a peer receives them over one stream connection, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import random
import secrets
import socket
import stat
import struct
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from toto.eventbus import (
    AT_MOST_ONCE,
    MAX_EPOCH,
    MAX_METADATA,
    Delivery,
    Event,
    EventBus,
    EventCallback,
    Position,
    decode_metadata,
    decode_position,
    deliver_to,
    encode_metadata,
    encode_position,
)
from toto.exceptions import PluginError

log = logging.getLogger("toto.events")

_HEADER = struct.Struct("!II")  # name length, payload length
# Set in the name length when the frame carries metadata: its length (4 bytes) follows the
# header, and the metadata the name. A frame without metadata is what it was before.
_HAS_METADATA = 0x80000000
# Set in the name length when the frame carries its position (a broadcast): the encoded
# position (toto.eventbus.encode_position) follows the header fields, before the name.
_HAS_POSITION = 0x40000000
_METADATA_LENGTH = struct.Struct("!I")
_MAX_NAME = 64 * 1024
_MAX_PAYLOAD = 256 * 1024 * 1024
# sun_path is 108 bytes on Linux, 104 on the BSDs; stay under both with the file name.
_MAX_SOCKET_PATH = 100
_SUFFIX = ".sock"


def socket_directory(directory: str) -> str:
    """Where the sockets of ``directory``'s group live: the directory itself, or, when
    its path is too long for a Unix socket address, a short one derived from it so
    every process of the group still agrees."""
    directory = os.path.abspath(directory)
    if len(directory) + 40 <= _MAX_SOCKET_PATH:
        return directory
    digest = hashlib.sha256(directory.encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"toto-{os.getuid()}-{digest}")


def private_directory(directory: str) -> None:
    """Make ``directory`` (mode 0700), or check that the one there is this user's alone.

    Every process sends its events to every socket in the directory, so whoever can add a
    socket there reads them, and whoever can replace one sends in a process's name. The
    short fallback directory is a predictable name in the shared temporary directory,
    which another local user could create first: a directory that is a link, belongs to
    another user or lets others in is refused, never used.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    found = os.lstat(directory)
    problem = None
    if not stat.S_ISDIR(found.st_mode):
        problem = "is not a directory (a link?)"
    elif found.st_uid != os.getuid():
        problem = f"belongs to uid {found.st_uid}, not to this user (uid {os.getuid()})"
    elif found.st_mode & 0o077:
        problem = f"lets other users in (mode {stat.S_IMODE(found.st_mode):o}; chmod 700 it)"
    if problem is not None:
        raise PluginError(
            f"machine event bus: {directory} {problem}: other local users could read or send this server's events; "
            "remove it or name another directory with event_url"
        )


def directory_from_options(options: Any) -> str:
    """The group directory: ``event_url`` (a path or ``unix:///path``) when given,
    else ``<pidfile without .pid>.events`` beside the pidfile."""
    url = getattr(options, "event_url", None) or ""
    if url:
        return url.removeprefix("unix://")
    pidfile = getattr(options, "pidfile", None) or "toto.pid"
    base = pidfile.removesuffix(".pid")
    return base + ".events"


class MachineBus(EventBus):
    """Unix-socket bus shared by every process that uses the same directory."""

    delivery = Delivery(
        guarantee=AT_MOST_ONCE,
        sequence="publisher",
        history=False,
        reconnect="a process that was not listening (starting, restarting) misses the broadcasts sent meanwhile; "
        "a broadcast=False event goes to a live process",
    )

    def __init__(self, directory: str) -> None:
        self.directory = socket_directory(directory)
        self.path = ""
        self._callbacks: list[EventCallback] = []
        self._server: asyncio.AbstractServer | None = None
        self._peers: dict[str, asyncio.Future[asyncio.StreamWriter | None]] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._listing: list[str] = []
        self._listing_mtime = -1
        self._closed = False
        self._epoch = secrets.token_hex(8)
        self._seq = 0

    @classmethod
    def from_options(cls, options: Any) -> MachineBus:
        return cls(directory_from_options(options))

    async def open(self) -> None:
        private_directory(self.directory)
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.path = os.path.join(self.directory, name + _SUFFIX)
        # Listen under a name peers ignore, then rename: a peer never sees a socket
        # that refuses connections yet, which it would take for a dead one.
        staging = os.path.join(self.directory, "." + name)
        self._server = await asyncio.start_unix_server(self._serve_peer, path=staging)
        os.chmod(staging, 0o600)
        os.rename(staging, self.path)

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def ping(self) -> bool:
        """Listening on this process's socket, whose file is still in the group's directory."""
        server = self._server
        return not self._closed and server is not None and server.is_serving() and os.path.exists(self.path)

    async def publish(
        self, name: str, payload: bytes, broadcast: bool = True, metadata: Mapping[str, str] | None = None
    ) -> Position | None:
        if self._closed:
            raise RuntimeError("the machine event bus is closed")
        encoded = name.encode("utf-8")
        if len(encoded) > _MAX_NAME or len(payload) > _MAX_PAYLOAD:
            raise ValueError(f"event {name[:80]!r} is too large for the machine bus")
        flags, fields, extra = 0, b"", b""
        received: dict[str, str] | None = None
        if metadata:
            extra = encode_metadata(metadata)
            flags |= _HAS_METADATA
            fields += _METADATA_LENGTH.pack(len(extra))
            received = dict(metadata)
        position = None
        if broadcast:
            # Numbered when it is sent: peers receive one sender's frames in this order.
            self._seq += 1
            position = Position(self._epoch, self._seq)
            flags |= _HAS_POSITION
            fields += encode_position(position)
        frame = _HEADER.pack(len(encoded) | flags, len(payload)) + fields + encoded + extra + payload
        peers = self._peer_paths()
        loop = asyncio.get_running_loop()
        if broadcast:
            for path in peers:
                if path == self.path:
                    # Asynchronously, like a delivery from a peer: a handler never runs inside send().
                    loop.call_soon(self._deliver, name, payload, received, position)
                else:
                    await self._send(path, frame)
            return position
        random.shuffle(peers)
        for path in peers:
            if path == self.path:
                loop.call_soon(self._deliver, name, payload, received, None)
                return None
            if await self._send(path, frame):
                return None
        log.warning("event %r was sent to one server, but no server listens in %s", name, self.directory)
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self._server is not None:
            self._server.close()
        for future in self._peers.values():
            writer = future.result() if future.done() and not future.cancelled() else None
            if writer is not None:
                writer.close()
        self._peers.clear()
        for task in list(self._readers):
            task.cancel()
        if self._readers:
            await asyncio.gather(*self._readers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    # -- sending

    def _peer_paths(self) -> list[str]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return [self.path] if self.path else []
        if mtime != self._listing_mtime:
            listing = sorted(
                os.path.join(self.directory, entry)
                for entry in os.listdir(self.directory)
                if entry.endswith(_SUFFIX) and not entry.startswith(".")
            )
            # Directory times are coarse: a change in the same tick as this listing
            # would leave the time unchanged, so only trust a listing of an older directory.
            racy = time.time_ns() - mtime < 50_000_000
            self._listing = listing
            self._listing_mtime = -1 if racy else mtime
        paths = list(self._listing)
        if self.path and self.path not in paths:
            paths.append(self.path)
        return paths

    async def _send(self, path: str, frame: bytes) -> bool:
        """Send one frame to a peer; False when the peer is gone (and forgotten)."""
        for _attempt in range(2):
            writer = await self._connection(path)
            if writer is None:
                return False
            try:
                writer.write(frame)
                await writer.drain()
                return True
            except (ConnectionError, OSError):
                # A cached connection to a process that restarted its socket or died:
                # drop it and try a fresh connection once.
                self._forget(path)
        return False

    async def _connection(self, path: str) -> asyncio.StreamWriter | None:
        future = self._peers.get(path)
        if future is None:
            future = asyncio.ensure_future(self._connect(path))
            self._peers[path] = future
        writer = await asyncio.shield(future)
        if writer is None:
            self._peers.pop(path, None)
        return writer

    async def _connect(self, path: str) -> asyncio.StreamWriter | None:
        try:
            _, writer = await asyncio.open_unix_connection(path)
        except (ConnectionRefusedError, FileNotFoundError):
            # Nobody listens: the process died without cleaning up. Remove its socket so
            # nobody tries it again.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._listing_mtime = -1
            return None
        except OSError as error:
            if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                return None
            raise
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        return writer

    def _forget(self, path: str) -> None:
        future = self._peers.pop(path, None)
        if future is not None and future.done() and not future.cancelled():
            writer = future.result()
            if writer is not None:
                writer.close()
        self._listing_mtime = -1

    # -- receiving

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                name_length, payload_length = _HEADER.unpack(header)
                metadata_length = 0
                position = None
                if name_length & _HAS_METADATA:
                    (metadata_length,) = _METADATA_LENGTH.unpack(await reader.readexactly(_METADATA_LENGTH.size))
                if name_length & _HAS_POSITION:
                    epoch_length = (await reader.readexactly(1))[0]
                    if not 0 < epoch_length <= MAX_EPOCH:
                        log.error("dropping a machine bus peer that sent a malformed position")
                        return
                    rest = await reader.readexactly(epoch_length + 8)
                    position, _ = decode_position(bytes([epoch_length]) + rest)
                name_length &= ~(_HAS_METADATA | _HAS_POSITION)
                if name_length > _MAX_NAME or payload_length > _MAX_PAYLOAD or metadata_length > MAX_METADATA:
                    log.error("dropping a machine bus peer that sent an oversized frame")
                    return
                name = (await reader.readexactly(name_length)).decode("utf-8")
                metadata = None
                if metadata_length:
                    try:
                        metadata = decode_metadata(await reader.readexactly(metadata_length))
                    except ValueError:
                        log.warning("machine bus: event %r came with unreadable metadata; delivered without", name)
                payload = await reader.readexactly(payload_length)
                self._deliver(name, payload, metadata, position)
        except (asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._readers.discard(task)

    def _deliver(
        self, name: str, payload: bytes, metadata: dict[str, str] | None = None, position: Position | None = None
    ) -> None:
        deliver_to(self._callbacks, Event(name, payload, metadata, position), "machine bus")
