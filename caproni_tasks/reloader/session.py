"""The session state file: what a running ``invoke run`` supervises, for other terminals.

One JSON file per config file under the user state directory
(``<state>/caproni-tasks/sessions/<sha256 of the config path>.json``), rewritten
atomically (temporary file + rename) on every state change, removed on a clean exit. A
file whose supervisor is gone — pid missing, or reused by another process — is *stale*:
``invoke status`` says so and ``invoke clean`` removes it after stopping the process
groups it recorded, when they are provably still ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.reloader import proctree

__all__ = [
    "CleanReport",
    "ProcessRecord",
    "SessionRecord",
    "clean_session",
    "read_session",
    "remove_session",
    "session_file",
    "sessions_dir",
    "write_session",
]

FORMAT_VERSION = 1


def sessions_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("caproni-tasks") / "sessions"


def session_file(config_path: Path) -> Path:
    """The state file of the session of ``config_path`` (an absolute, resolved path)."""
    key = hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:32]
    return sessions_dir() / f"{key}.json"


@dataclass
class ProcessRecord:
    reloader: str
    name: str
    state: str
    pid: int | None = None
    pgid: int | None = None
    #: Kernel start time of ``pid`` (clock ticks after boot): tells a reused pid apart.
    pid_start: int | None = None
    restarts: int = 0
    #: Return code of the last run: >= 0 an exit status, < 0 the signal that ended it.
    last_exit: int | None = None
    started_at: float | None = None  # epoch seconds of the current run's start
    command: str = ""


@dataclass
class SessionRecord:
    config: str
    supervisor_pid: int
    supervisor_start: int | None
    started_at: float
    updated_at: float = 0.0
    reloaders: dict[str, str] = field(default_factory=dict)  # name -> kind
    processes: list[ProcessRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION

    @property
    def alive(self) -> bool:
        """Whether the supervisor that wrote this still runs (same pid, same start)."""
        return proctree.is_alive(self.supervisor_pid, self.supervisor_start)

    def process(self, reloader: str, name: str) -> ProcessRecord | None:
        for record in self.processes:
            if record.reloader == reloader and record.name == name:
                return record
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionRecord:
        processes = [ProcessRecord(**p) for p in data.get("processes", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["processes"] = processes
        return cls(**fields)


def write_session(path: Path, record: SessionRecord) -> None:
    """Replace the state file in one step: readers see the old or the new file, whole."""
    record.updated_at = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".session-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record.to_json(), handle, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_session(config_path: Path) -> SessionRecord | None:
    """The recorded session of ``config_path``, or None (no file, or unreadable)."""
    path = session_file(config_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SessionRecord.from_json(data)
    except (OSError, ValueError, TypeError):
        return None


def remove_session(config_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        session_file(config_path).unlink()


def current_start_ticks() -> int | None:
    info = proctree.read_process(os.getpid())
    return info.start_ticks if info else None


def leftovers(record: SessionRecord) -> list[proctree.ProcInfo]:
    """Live processes of a stale session's process groups that are still ours.

    A group counts only when it is still a session of its own (``sid == pgid``, as the
    supervisor created it), its number is not held by another process than the
    recorded leader (same pid, same start time), and its members started no earlier
    than that leader did — a pid/pgid reused by an unrelated program is never touched.
    """
    processes = proctree.all_processes()
    by_pid = {p.pid: p for p in processes}
    found: dict[int, proctree.ProcInfo] = {}
    for proc in record.processes:
        if proc.pgid is None or proc.pid_start is None or proc.pid is None:
            continue
        holder = by_pid.get(proc.pid)
        if holder is not None and holder.start_ticks != proc.pid_start:
            continue  # the number now belongs to another process: so does the group
        for member in proctree.group_members(proc.pgid, processes):
            if member.sid != proc.pgid:
                continue
            same_leader = member.pid == proc.pid and member.start_ticks == proc.pid_start
            if same_leader or member.start_ticks >= proc.pid_start:
                found[member.pid] = member
    return sorted(found.values(), key=lambda p: p.pid)


@dataclass
class CleanReport:
    found: bool = False
    stale: bool = False
    alive_pid: int | None = None  # a live supervisor: nothing was touched
    killed: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    removed: bool = False


def clean_session(config_path: Path, *, grace: float = 3.0) -> CleanReport:
    """Stop what a crashed session left running and remove its state file.

    Never touches a session whose supervisor is alive. Leftovers get SIGTERM, then
    SIGKILL after ``grace`` seconds.
    """
    report = CleanReport()
    path = session_file(config_path)
    if not path.exists():
        return report
    report.found = True
    record = read_session(config_path)
    if record is not None and record.alive:
        report.alive_pid = record.supervisor_pid
        return report
    report.stale = True
    if record is not None:
        targets = leftovers(record)
        if targets:
            report.killed = [t.pid for t in targets]
            proctree.signal_pids(targets, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(
                proctree.is_alive(t.pid, t.start_ticks) for t in targets
            ):
                time.sleep(0.05)
            proctree.signal_pids(targets, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and any(
                proctree.is_alive(t.pid, t.start_ticks) for t in targets
            ):
                time.sleep(0.02)
            report.survivors = [t.pid for t in targets if proctree.is_alive(t.pid, t.start_ticks)]
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    report.removed = True
    return report
