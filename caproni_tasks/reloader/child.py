"""One run of a process as the operating system sees it: spawn, signal, reap.

A `Child` is started in a session (process group) of its own, with stdin closed and
stdout+stderr on one pipe. Stopping it signals the whole group and the descendants that
escaped it (``setsid``), first with the stop signal, then (after ``stop_timeout``)
SIGTERM when that was not the stop signal and ``term_grace`` allows, then SIGKILL; what
the leader leaves behind in its group after it exits is cleared the same way. It knows
nothing of restarts, readiness or output lines: the supervisor composes those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from caproni_tasks.reloader import proctree
from caproni_tasks.reloader.aio import wait_timeout

__all__ = ["Child", "describe_exit"]


def describe_exit(code: int | None) -> str:
    """An exit status in words: ``exit 3``, ``SIGKILL``, ``-`` (none yet)."""
    if code is None:
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}" + _SHELL_EXITS.get(code, "")


#: What ``/bin/sh`` means by these exit statuses (a typo in a command is common).
_SHELL_EXITS = {126: " (command not executable)", 127: " (command not found)"}


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the child's exit as soon as it is reaped. ``Process.wait()`` also waits
    for the output pipes to close, which a lingering grandchild can hold open forever."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class Child:
    """One spawn of ``argv`` and everything it starts in its process group.

    ``keep_pids`` names the leaders asyncio reaps itself (every supervised process's):
    when members of the group turn out to be zombies re-parented to us (a subreaper),
    the others are reaped here. ``notify`` receives the lines worth telling the user
    (a stop that needed SIGTERM or SIGKILL).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        keep_pids: Callable[[], set[int]],
        notify: Callable[[str], None],
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self._keep_pids = keep_pids
        self._notify = notify
        self.pid: int | None = None
        #: The leader's create time: with the pid, its identity (pids are reused).
        self.pid_start: float | None = None
        self.started_at: float | None = None  # wall clock, for status
        self.exited = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._transport: asyncio.SubprocessTransport | None = None
        self._escaped: list[proctree.ProcInfo] = []
        #: True once the group is known to be empty: its number may then be reused by
        #: an unrelated process group, which must never be signalled.
        self._group_gone = True

    # -- spawning ---------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the process. Raises `OSError` when it cannot start. When cancelled
        mid-spawn, the child may already run (and have children): it is adopted before
        the cancellation goes on, so stopping this `Child` stops its whole group."""
        loop = asyncio.get_running_loop()
        spawning = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _ExitAwareProtocol(limit=2**16, loop=loop),
                *self.argv,
                cwd=str(self.cwd),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_signal_reset_for_child(),
            )
        )
        try:
            transport, protocol = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                self._adopt(*await spawning, loop)
            raise
        self._adopt(transport, protocol, loop)

    def _adopt(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _ExitAwareProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        self._proc = proc
        self._transport = transport
        self.exited = protocol.exited
        self.pid = proc.pid
        info = proctree.read_process(proc.pid)
        self.pid_start = info.started if info else None
        self.started_at = time.time()
        self._escaped = []
        self._group_gone = False

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def stdout(self) -> asyncio.StreamReader:
        """stdout and stderr, merged (only once started)."""
        assert self._proc is not None and self._proc.stdout is not None
        return self._proc.stdout

    @property
    def returncode(self) -> int | None:
        """The leader's exit status (negative: killed by that signal); None while it runs."""
        return None if self._proc is None else self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def close(self) -> None:
        """Release the pipe and transport (once the output has been read)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- the group ----------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group and to descendants that escaped it."""
        if self.pid is None or self._group_gone:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        proctree.signal_pids(self._escaped, sig)

    def note_escaped(self) -> None:
        """Remember descendants that left the group (``setsid``) while their ancestors
        are still alive to tell us they are ours."""
        if self.pid is None:
            return
        for info in proctree.descendants(self.pid):
            if (
                not info.zombie
                and info.pgid != self.pid
                and all(e.pid != info.pid for e in self._escaped)
            ):
                self._escaped.append(info)

    def group_alive(self) -> bool:
        """Whether anything of this run is left: a live member of its process group, or
        a descendant that escaped the group."""
        if self.pid is None or self._group_gone:
            return False
        escaped = any(proctree.is_alive(e.pid, e.started) for e in self._escaped)
        try:
            os.killpg(self.pid, 0)  # cheap: ESRCH when the group is empty
        except ProcessLookupError:
            return escaped
        except PermissionError:
            return True
        # Members may be zombies re-parented to us (we are a subreaper): reap those,
        # leaving alone the leaders that asyncio is about to reap itself.
        members = proctree.group_members(self.pid, zombies=True)
        if any(m.zombie for m in members):
            proctree.reap_orphans(keep=self._keep_pids())
        return any(not m.zombie for m in members) or escaped

    async def clear_group(self, sig: int, timeout: float) -> None:
        """After the leader exited: stop what it left behind in its group (a background
        job, a worker), ``sig`` then SIGKILL after ``timeout``, so nothing outlives its
        run."""
        if self.group_alive():
            self.signal(sig)
            await self._wait_group_gone(timeout)
            if self.group_alive():
                self.signal(signal.SIGKILL)
                await self._wait_group_gone(5.0)
        self._group_gone = not self.group_alive()

    async def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.group_alive():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- stopping -----------------------------------------------------------------------

    async def stop_leader(self, sig: int, stop_timeout: float, term_grace: float) -> None:
        """Signal the group with ``sig`` and wait for the leader to exit: after
        ``stop_timeout``, SIGTERM (given ``term_grace``) when that was not the signal
        already, then SIGKILL. Returns once the leader has exited; the rest of the
        group is `clear_group`'s."""
        self.note_escaped()
        self.signal(sig)
        try:
            await wait_timeout(self.exited.wait(), stop_timeout)
        except TimeoutError:
            await self._terminate_late(sig, stop_timeout, term_grace)

    async def _terminate_late(self, sig: int, stop_timeout: float, term_grace: float) -> None:
        waited = f"did not stop within {stop_timeout:g}s of {signal.Signals(sig).name}"
        if term_grace > 0 and sig != signal.SIGTERM:
            self._notify(f"{waited}; terminating")
            self.signal(signal.SIGTERM)
            try:
                await wait_timeout(self.exited.wait(), term_grace)
                return
            except TimeoutError:
                waited = f"did not stop within {term_grace:g}s of SIGTERM"
        self._notify(f"{waited}; killing")
        self.signal(signal.SIGKILL)
        await self.exited.wait()


#: Signals a child must be able to receive even when we were started ignoring them.
_INHERITED_IGNORES = (signal.SIGINT, signal.SIGQUIT)


def _restore_default_dispositions() -> None:
    for signum in _INHERITED_IGNORES:
        signal.signal(signum, signal.SIG_DFL)


def _signal_reset_for_child() -> Callable[[], None] | None:
    """A pre-exec step that un-ignores SIGINT/SIGQUIT, only when we ignore them now.

    An ignored disposition survives exec (handled ones are reset), and a shell puts
    SIGINT/SIGQUIT to "ignore" for background jobs (``cmd &``, nohup): without the reset
    a process with ``stop_signal: SIGINT`` would never see its stop signal. Normal runs
    install handlers, so they keep the plain fork+exec path with no pre-exec code.
    """
    if any(signal.getsignal(signum) == signal.SIG_IGN for signum in _INHERITED_IGNORES):
        return _restore_default_dispositions
    return None
