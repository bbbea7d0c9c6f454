"""Processes as the kernel sees them: identity, groups, descendants (Linux ``/proc``).

A pid alone is not an identity — pids are reused. Every decision to signal something
recorded earlier (a stale session's groups, an escaped grandchild) checks the process's
start time as well, so an unrelated process that inherited the number is left alone.
Elsewhere than Linux these helpers degrade to what ``os.kill(pid, 0)`` can tell.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcInfo",
    "all_processes",
    "descendants",
    "group_members",
    "is_alive",
    "read_process",
    "reap_orphans",
    "set_child_subreaper",
    "signal_pids",
]

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str  # R, S, Z, …
    start_ticks: int  # clock ticks after boot: with the pid, a process's identity


def _parse_stat(pid: int, text: str) -> ProcInfo | None:
    # The command name may contain spaces and parentheses: split after its last ')'.
    _, _, rest = text.rpartition(")")
    fields = rest.split()
    if len(fields) < 20:
        return None
    try:
        return ProcInfo(
            pid=pid,
            state=fields[0],
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            start_ticks=int(fields[19]),
        )
    except ValueError:
        return None


def read_process(pid: int) -> ProcInfo | None:
    """The process ``pid`` now, or None when it does not exist (or /proc is absent)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    return _parse_stat(pid, text)


def all_processes() -> list[ProcInfo]:
    """Every process visible in /proc (one small read each: this runs on every stop)."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return []
    found: list[ProcInfo] = []
    for name in names:
        if name.isdigit():
            info = read_process(int(name))
            if info is not None:
                found.append(info)
    return found


def is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_ticks``."""
    if pid <= 0:
        return False
    info = read_process(pid)
    if info is not None:
        if info.state == "Z":
            return False
        return start_ticks is None or info.start_ticks == start_ticks
    if sys.platform.startswith("linux"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int, processes: list[ProcInfo] | None = None) -> list[ProcInfo]:
    """Every live process below ``pid`` in the parent tree (children, grandchildren…)."""
    processes = all_processes() if processes is None else processes
    children: dict[int, list[ProcInfo]] = {}
    for info in processes:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcInfo] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child.pid)
    return found


def group_members(
    pgid: int, processes: list[ProcInfo] | None = None, *, zombies: bool = False
) -> list[ProcInfo]:
    """Processes in the process group ``pgid``: live ones, and zombies if asked."""
    processes = all_processes() if processes is None else processes
    return [p for p in processes if p.pgid == pgid and (zombies or p.state != "Z")]


def signal_pids(targets: list[ProcInfo], sig: int) -> None:
    """Send ``sig`` to each target that is still the same process."""
    for target in targets:
        if is_alive(target.pid, target.start_ticks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target.pid, sig)


def set_child_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux ≥ 3.4), so a
    grandchild that called ``setsid`` and whose parent died is still ours to stop."""
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
    """Orphans re-parented to us (as a subreaper) other than ``keep``: zombies are reaped,
    live ones returned so the caller can stop them."""
    me = os.getpid()
    live: list[ProcInfo] = []
    for info in all_processes():
        if info.ppid != me or info.pid in keep:
            continue
        if info.state == "Z":
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
