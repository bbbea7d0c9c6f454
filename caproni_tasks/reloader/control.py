"""The control socket of a running session: ``invoke logs`` and ``invoke restart`` from
another terminal.

A running ``invoke run`` listens on a Unix socket in the session state directory
(`caproni_tasks.reloader.session.control_socket`, recorded in the state file as
``control``). The socket file is created with mode 0600 in a directory of mode 0700,
and every connection's peer is checked (``SO_PEERCRED``): only the user who runs the
session can talk to it.

The protocol is line-delimited JSON. A client sends one request line and reads reply
lines until ``{"type": "end"}`` (or the connection closes):

- ``{"op": "logs", "process": NAME|null, "since": EPOCH|null, "follow": BOOL}`` →
  ``{"type": "ok", "labels": [LABEL…]}``, then ``{"type": "line", "time": EPOCH,
  "process": LABEL, "text": TEXT, "event": BOOL}`` per line (oldest first), then
  ``{"type": "end"}`` — or, with ``follow``, new lines as they come until the session
  ends or the client hangs up. A follower that cannot keep up gets ``{"type":
  "dropped", "count": N}``.
- ``{"op": "restart", "process": NAME}`` → ``{"type": "ok", "message": TEXT}``.
- ``{"op": "ping"}`` → ``{"type": "ok", "pid": SUPERVISOR_PID}``.

A request that cannot be served is answered ``{"type": "error", "message": TEXT}``.
NAME is a process's label, its name, ``reloader.process``, or a reloader's name (all of
its processes; for ``logs`` also its own lines); ``caproni`` names the supervisor's
own lines.

The session keeps, per label, a bounded ring of recent output lines with their times
(`LogBook`), which is what ``logs`` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caproni_tasks.reloader.output import SUPERVISOR_LABEL

if TYPE_CHECKING:
    from caproni_tasks.reloader.supervisor import ManagedProcess, Supervisor

__all__ = [
    "RING_BYTES",
    "RING_LINES",
    "ControlError",
    "ControlServer",
    "LogBook",
    "LogLine",
    "request",
]

#: Lines kept per label, and bytes of text: whichever is reached first.
RING_LINES = 5000
RING_BYTES = 2 * 1024 * 1024
#: Lines queued for one follower before lines are dropped for it.
FOLLOW_QUEUE = 10000
#: Longest request line accepted.
MAX_REQUEST = 64 * 1024
#: Longest a restart request waits for the new run to start.
RESTART_WAIT = 60.0
#: sun_path holds 108 bytes on Linux (104 elsewhere); longer paths go through /proc.
_SUN_PATH_MAX = 100


class ControlError(Exception):
    """The session cannot be reached, or it refused a request (the message says why)."""


@dataclass(frozen=True)
class LogLine:
    time: float
    process: str
    text: str
    event: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "line",
            "time": self.time,
            "process": self.process,
            "text": self.text,
            "event": self.event,
        }


class _Ring:
    def __init__(self, lines: int, size: int) -> None:
        self.lines: deque[LogLine] = deque()
        self._max_lines = lines
        self._max_bytes = size
        self._bytes = 0

    def add(self, line: LogLine) -> None:
        self.lines.append(line)
        self._bytes += len(line.text)
        while len(self.lines) > self._max_lines or (
            self._bytes > self._max_bytes and len(self.lines) > 1
        ):
            self._bytes -= len(self.lines.popleft().text)


class _Follower:
    def __init__(self, labels: frozenset[str] | None) -> None:
        self.labels = labels
        self.queue: asyncio.Queue[LogLine | None] = asyncio.Queue(FOLLOW_QUEUE)
        self.dropped = 0

    def offer(self, line: LogLine | None) -> None:
        if line is not None and self.labels is not None and line.process not in self.labels:
            return
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1


class LogBook:
    """Recent output lines per label (an `Output` listener), and live followers."""

    def __init__(self, lines: int = RING_LINES, size: int = RING_BYTES) -> None:
        self._rings: dict[str, _Ring] = {}
        self._max_lines = lines
        self._max_bytes = size
        self._lock = threading.Lock()
        self._followers: list[_Follower] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Followers live on ``loop``; lines recorded from other threads reach them there."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return list(self._rings)

    def record(self, name: str, lines: list[bytes], event: bool) -> None:
        """The `Output` listener: keep ``lines`` of ``name`` with the current time."""
        now = time.time()
        entries = [
            LogLine(now, name, raw.rstrip(b"\r").decode("utf-8", "replace"), event) for raw in lines
        ]
        with self._lock:
            ring = self._rings.get(name)
            if ring is None:
                ring = self._rings[name] = _Ring(self._max_lines, self._max_bytes)
            for entry in entries:
                ring.add(entry)
        if self._followers:
            self._deliver(entries)

    def _deliver(self, entries: Sequence[LogLine | None]) -> None:
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._offer(entries)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody follows
                self._loop.call_soon_threadsafe(self._offer, entries)

    def _offer(self, entries: Sequence[LogLine | None]) -> None:
        for follower in list(self._followers):
            for entry in entries:
                follower.offer(entry)

    def recent(self, labels: frozenset[str] | None, since: float | None) -> list[LogLine]:
        """Kept lines of ``labels`` (None: all) from ``since`` on, oldest first."""
        with self._lock:
            rings = [r for n, r in self._rings.items() if labels is None or n in labels]
            lines = [line for ring in rings for line in ring.lines]
        if since is not None:
            lines = [line for line in lines if line.time >= since]
        lines.sort(key=lambda line: line.time)  # stable: each ring is already in order
        return lines

    def follow(self, labels: frozenset[str] | None) -> _Follower:
        follower = _Follower(labels)
        self._followers.append(follower)
        return follower

    def unfollow(self, follower: _Follower) -> None:
        with contextlib.suppress(ValueError):
            self._followers.remove(follower)

    def end_followers(self) -> None:
        """The session ends: every follower is told so."""
        self._offer([None])


# -- socket paths ---------------------------------------------------------------------


@contextlib.contextmanager
def _socket_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits in sun_path: the path itself, or (when too
    long) the same file reached through an open descriptor of its directory."""
    if len(os.fsencode(str(path))) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux), else None (unknown)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


# -- the server -----------------------------------------------------------------------


class ControlServer:
    """Serves a session's control socket at ``path`` (see the module's protocol)."""

    def __init__(self, path: Path, book: LogBook, supervisor: Supervisor) -> None:
        self.path = path
        self.book = book
        self.supervisor = supervisor
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; the socket file is owner-only from the moment it has its name."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a crashed session's: nobody listens on it
        temporary = directory / f".{self.path.stem}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _socket_address(temporary) as address:
                sock.bind(address)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
            sock.listen(32)
            sock.setblocking(False)
            self.book.attach(asyncio.get_running_loop())
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST
            )
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    async def close(self) -> None:
        """Stop listening, tell followers the session ended, remove the socket file."""
        if self._server is not None:
            self._server.close()
        self.book.end_followers()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=2.0)
        for handler in set(self._handlers):
            handler.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            sock = writer.get_extra_info("socket")
            uid = _peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                return  # not the session's owner: say nothing
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()

        try:
            line = await reader.readline()
        except ValueError:
            await send({"type": "error", "message": "request line too long"})
            return
        try:
            requested = json.loads(line)
            if not isinstance(requested, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            await send({"type": "error", "message": f"bad request: {exc}"})
            return
        op = requested.get("op")
        if op == "ping":
            await send({"type": "ok", "pid": os.getpid()})
        elif op == "restart":
            await self._restart(requested, send)
        elif op == "logs":
            await self._logs(requested, reader, send)
        else:
            await send({"type": "error", "message": f"unknown op {op!r}"})

    # -- names --------------------------------------------------------------------

    def _processes(self, name: str) -> list[ManagedProcess]:
        found = []
        for process in self.supervisor.processes.values():
            ref = process.ref
            if name in (process.label, ref.process, str(ref), ref.reloader):
                found.append(process)
        return found

    def _known(self) -> str:
        names = [p.label for p in self.supervisor.processes.values()]
        return ", ".join(names) or "none"

    # -- ops ----------------------------------------------------------------------

    async def _restart(self, requested: dict[str, Any], send: Any) -> None:
        name = requested.get("process")
        if not isinstance(name, str) or not name:
            await send({"type": "error", "message": "restart needs a process name"})
            return
        processes = self._processes(name)
        if not processes:
            await send(
                {
                    "type": "error",
                    "message": f"no process {name!r} in this session (processes: {self._known()})",
                }
            )
            return
        reason = "restart requested (invoke restart)"
        messages = await asyncio.gather(
            *(p.restart_requested(reason, RESTART_WAIT) for p in processes)
        )
        await send({"type": "ok", "message": "; ".join(messages)})

    async def _logs(
        self, requested: dict[str, Any], reader: asyncio.StreamReader, send: Any
    ) -> None:
        name = requested.get("process")
        since = requested.get("since")
        follow = bool(requested.get("follow"))
        labels: frozenset[str] | None = None
        if name is not None:
            if not isinstance(name, str):
                await send({"type": "error", "message": "process must be a name"})
                return
            processes = self._processes(name)
            chosen = {p.label for p in processes}
            if name in self.book.labels or name == SUPERVISOR_LABEL:
                chosen.add(name)  # a reloader's own lines, the supervisor's
            if not chosen:
                await send(
                    {
                        "type": "error",
                        "message": f"no process {name!r} in this session "
                        f"(processes: {self._known()}; {SUPERVISOR_LABEL} for the "
                        "supervisor's own lines)",
                    }
                )
                return
            labels = frozenset(chosen)
        if since is not None and not isinstance(since, int | float):
            await send({"type": "error", "message": "since must be a time in seconds"})
            return
        follower = self.book.follow(labels) if follow else None
        try:
            shown = sorted(labels) if labels is not None else self.book.labels
            await send({"type": "ok", "labels": shown})
            for line in self.book.recent(labels, since):
                await send(line.to_json())
            if follower is None:
                await send({"type": "end"})
                return
            await self._follow(follower, reader, send)
        finally:
            if follower is not None:
                self.book.unfollow(follower)

    async def _follow(self, follower: _Follower, reader: asyncio.StreamReader, send: Any) -> None:
        hangup = asyncio.ensure_future(reader.read(1))  # EOF: the client went away
        try:
            while True:
                getter = asyncio.ensure_future(follower.queue.get())
                done, _ = await asyncio.wait({getter, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if hangup in done:
                    getter.cancel()
                    return
                line = getter.result()
                if follower.dropped:
                    await send({"type": "dropped", "count": follower.dropped})
                    follower.dropped = 0
                if line is None:
                    await send({"type": "end", "reason": "the session ended"})
                    return
                await send(line.to_json())
        finally:
            hangup.cancel()


# -- the client -----------------------------------------------------------------------


def request(
    path: Path, message: dict[str, Any], *, timeout: float | None = 10.0
) -> Iterator[dict[str, Any]]:
    """Send ``message`` to the session listening at ``path``; yield its reply lines up
    to ``{"type": "end"}`` (or the close). `ControlError` when it cannot be reached or
    answers an error. ``timeout`` bounds each wait for a line (None: wait forever)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout if timeout is not None else 10.0)
        try:
            with _socket_address(path) as address:
                sock.connect(address)
        except FileNotFoundError:
            raise ControlError(f"no session listens at {path}") from None
        except OSError as exc:
            raise ControlError(
                f"cannot reach the session at {path}: {exc.strerror or exc}"
            ) from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        sock.settimeout(timeout)
        stream = sock.makefile("rb")
        while True:
            try:
                raw = stream.readline()
            except TimeoutError:
                raise ControlError("the session did not answer in time") from None
            except OSError as exc:
                raise ControlError(
                    f"the session's connection failed: {exc.strerror or exc}"
                ) from None
            if not raw:
                return
            try:
                reply = json.loads(raw)
            except ValueError:
                raise ControlError("the session sent something that is not JSON") from None
            if not isinstance(reply, dict):
                raise ControlError("the session sent something that is not a JSON object")
            if reply.get("type") == "error":
                raise ControlError(str(reply.get("message", "the session refused the request")))
            yield reply
            if reply.get("type") == "end":
                return
    finally:
        sock.close()
