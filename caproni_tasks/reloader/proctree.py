"""Processes as the kernel sees them: identity, groups, descendants, session markers.

Built on psutil, so shutdown and ``clean`` are as thorough on macOS as on Linux. A pid
alone is not an identity — pids are reused. Every decision to signal something recorded
earlier (a stale session's groups, an escaped grandchild, a marked daemon) checks the
process's create time as well, so an unrelated process that inherited the number is
left alone. psutil is imported inside the functions: ``invoke --list`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = [
    "MARKER_ENV",
    "ProcInfo",
    "all_processes",
    "descendants",
    "group_members",
    "is_alive",
    "marked_processes",
    "read_process",
    "reap_orphans",
    "same_start",
    "set_child_subreaper",
    "signal_pids",
]

#: The environment variable every process of a session inherits, naming the session.
MARKER_ENV = "CAPRONI_TASKS_SESSION"

#: Create times are exact to the kernel's clock tick (10 ms on Linux) or better; two
#: records of one process agree far more closely than two processes ever can.
_START_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    zombie: bool
    #: Create time (seconds since the epoch): with the pid, a process's identity.
    started: float


def same_start(recorded: float | None, actual: float | None) -> bool:
    """Whether two create times are the same process's (None never matches)."""
    if recorded is None or actual is None:
        return False
    return abs(recorded - actual) < _START_TOLERANCE


def _group_and_session(pid: int) -> tuple[int, int]:
    try:
        pgid = os.getpgid(pid)
    except OSError:
        pgid = -1
    try:
        sid = os.getsid(pid)
    except OSError:
        sid = -1
    return pgid, sid


def _info(proc: psutil.Process) -> ProcInfo | None:
    import psutil

    try:
        with proc.oneshot():
            ppid = proc.ppid()
            zombie = proc.status() == psutil.STATUS_ZOMBIE
            started = proc.create_time()
    except psutil.ZombieProcess:
        # Some platforms refuse details of a zombie; it is dead either way.
        ppid, zombie, started = -1, True, 0.0
    except psutil.Error:
        return None
    pgid, sid = _group_and_session(proc.pid)
    return ProcInfo(proc.pid, ppid, pgid, sid, zombie, started)


def read_process(pid: int) -> ProcInfo | None:
    """The process ``pid`` now, or None when it does not exist."""
    import psutil

    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return None
    return _info(proc)


def all_processes() -> list[ProcInfo]:
    """Every process visible to us."""
    import psutil

    found: list[ProcInfo] = []
    for pid in psutil.pids():
        info = read_process(pid)
        if info is not None:
            found.append(info)
    return found


def is_alive(pid: int, started: float | None) -> bool:
    """True when ``pid`` runs (not a zombie) and is the process created at ``started``.

    Without a recorded create time nothing can be proven: False.
    """
    if started is None:
        return False
    info = read_process(pid)
    return info is not None and not info.zombie and same_start(started, info.started)


def descendants(pid: int) -> list[ProcInfo]:
    """Every live process below ``pid`` in the parent tree (children, grandchildren…).

    On Linux the tree is followed through ``/proc/<pid>/task/<tid>/children``, which
    costs a read per process of the tree (a child with no children: one or two), not a
    scan of every process on the machine; it is on the path of every restart.
    """
    pids = _linux_descendants(pid)
    if pids is None:
        import psutil

        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return []
        found = [_info(child) for child in children]
    else:
        found = [read_process(child) for child in pids]
    return [info for info in found if info is not None]


def _linux_descendants(pid: int) -> list[int] | None:
    """Pids below ``pid`` from /proc's children lists; None where those do not exist."""
    if not sys.platform.startswith("linux") or not os.path.exists("/proc/self/task"):
        return None
    found: list[int] = []
    pending = [pid]
    seen = {pid}
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as handle:
                    children = [int(word) for word in handle.read().split()]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{parent}"):
                    continue  # gone meanwhile
                return None  # kernel without CONFIG_PROC_CHILDREN
            except OSError:
                continue
            for child in children:
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    pending.append(child)
    return found


def group_members(pgid: int, *, zombies: bool = False) -> list[ProcInfo]:
    """Processes in the process group ``pgid``: live ones, and zombies if asked."""
    import psutil

    found: list[ProcInfo] = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        info = read_process(pid)
        if info is not None and info.pgid == pgid and (zombies or not info.zombie):
            found.append(info)
    return found


def marked_processes(name: str = MARKER_ENV) -> list[tuple[ProcInfo, str]]:
    """Live processes whose environment has ``name``, with its value.

    A process whose environment we may not read (another user's: AccessDenied) is
    skipped. The identity is checked again after the read, so a value is never
    attributed to a process that took over the pid in between. Never includes us.
    """
    import psutil

    me = os.getpid()
    found: list[tuple[ProcInfo, str]] = []
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            proc = psutil.Process(pid)
            value = proc.environ().get(name)
        except psutil.Error:
            continue
        except OSError:
            continue  # an environment that vanished or cannot be parsed mid-read
        if value is None:
            continue
        info = _info(proc)
        if info is None or info.zombie or not proc.is_running():
            continue
        found.append((info, value))
    return found


def signal_pids(targets: list[ProcInfo], sig: int) -> None:
    """Send ``sig`` to each target that is still the same process."""
    for target in targets:
        if is_alive(target.pid, target.started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target.pid, sig)


def set_child_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ≥ 3.4), so a
    grandchild that called ``setsid`` and whose parent died is still ours to stop.
    Elsewhere such a daemon is found by the session marker instead."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return int(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(keep: set[int]) -> list[ProcInfo]:
    """Our children other than ``keep`` (orphans re-parented to us as a subreaper):
    zombies are reaped, live ones returned so the caller can stop them."""
    import psutil

    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    live: list[ProcInfo] = []
    for child in children:
        if child.pid in keep:
            continue
        info = _info(child)
        if info is None:
            continue
        if info.zombie:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(info.pid, os.WNOHANG)
        else:
            live.append(info)
    return live


def signal_number(name: str) -> int:
    """``"SIGTERM"``/``"TERM"``/``"15"`` → the number; ValueError for anything else."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    value = getattr(signal, text, None)
    if not isinstance(value, signal.Signals):
        raise ValueError(f"unknown signal {name!r}")
    return int(value)
