"""The session state file: what a running ``invoke run`` supervises, for other terminals.

One JSON file per config file under the user state directory
(``<state>/caproni-tasks/sessions/<sha256 of the config path>.json``), rewritten
atomically (temporary file + rename) on every state change, removed on a clean exit. A
file whose supervisor is gone — pid missing, or reused by another process — is *stale*:
``invoke status`` says so and ``invoke clean`` removes it after stopping what the
session left running. A file that cannot be read or is not the expected shape is stale
too: it names no live supervisor, so it never blocks a new session.

Every process of a session inherits ``CAPRONI_TASKS_SESSION=<marker>``; the marker names
the config and the supervisor (pid and create time). It finds what a crashed session
left behind however it detached (``setsid``, double fork, re-parented to init), even
when the state file is lost, and only while the supervisor it names is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.atomicfile import write_atomic
from caproni_tasks.reloader import proctree

__all__ = [
    "CleanReport",
    "ProcessRecord",
    "SessionFileError",
    "SessionRecord",
    "SessionState",
    "clean_session",
    "control_socket",
    "current_process_start",
    "load_session",
    "read_session",
    "remove_session",
    "session_file",
    "session_marker",
    "sessions_dir",
    "stop_marked",
    "write_session",
]

#: 2: start times are create times (seconds since the epoch); processes carry a marker.
FORMAT_VERSION = 2

#: A state file is a few kilobytes; anything far larger is not one.
_MAX_STATE_BYTES = 4 * 1024 * 1024


def sessions_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("caproni-tasks") / "sessions"


def _config_key(config_path: Path | str) -> str:
    return hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:32]


def session_file(config_path: Path) -> Path:
    """The state file of the session of ``config_path`` (an absolute, resolved path)."""
    return sessions_dir() / f"{_config_key(config_path)}.json"


def session_marker(config_path: Path | str, supervisor_pid: int, start: float | None) -> str:
    """The marker value of a session: ``<config key>:<supervisor pid>:<create time>``."""
    return f"{_config_key(config_path)}:{supervisor_pid}:{start!r}"


def _parse_marker(value: str) -> tuple[str, int, float] | None:
    key, _, rest = value.partition(":")
    pid_text, _, start_text = rest.partition(":")
    try:
        return key, int(pid_text), float(start_text)
    except ValueError:
        return None


class SessionFileError(ValueError):
    """A state file that is not a session record (its message says why)."""


@dataclass
class ProcessRecord:
    reloader: str
    name: str
    state: str
    pid: int | None = None
    pgid: int | None = None
    #: Create time of ``pid`` (seconds since the epoch): tells a reused pid apart.
    pid_start: float | None = None
    restarts: int = 0
    #: Return code of the last run: >= 0 an exit status, < 0 the signal that ended it.
    last_exit: int | None = None
    started_at: float | None = None  # epoch seconds of the current run's start
    command: str = ""
    #: How the supervisor stops this process, so that `clean_session` stops a crashed
    #: session's leftovers the same way: the stop signal, seconds to wait for it
    #: (None: records written before these fields; the clean's own grace), and seconds
    #: SIGTERM gets after that when it was not the stop signal (0: SIGKILL at once).
    stop_signal: str = "SIGTERM"
    stop_timeout: float | None = None
    term_grace: float = 0.0

    @classmethod
    def from_json(cls, data: object, where: str) -> ProcessRecord:
        fields = _object(data, where)
        return cls(
            reloader=_text(fields, "reloader", where),
            name=_text(fields, "name", where),
            state=_text(fields, "state", where),
            pid=_optional_pid(fields, "pid", where),
            pgid=_optional_pid(fields, "pgid", where),
            pid_start=_optional_number(fields, "pid_start", where),
            restarts=_integer(fields, "restarts", where, default=0, minimum=0),
            last_exit=_optional_integer(fields, "last_exit", where),
            started_at=_optional_number(fields, "started_at", where),
            command=_text(fields, "command", where, default=""),
            stop_signal=_signal_name(fields, "stop_signal", where),
            stop_timeout=_optional_seconds(fields, "stop_timeout", where),
            term_grace=_optional_seconds(fields, "term_grace", where) or 0.0,
        )


@dataclass
class SessionRecord:
    config: str
    supervisor_pid: int
    #: Create time of the supervisor: with its pid, its identity.
    supervisor_start: float | None
    started_at: float
    updated_at: float = 0.0
    reloaders: dict[str, str] = field(default_factory=dict)  # name -> kind
    processes: list[ProcessRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION
    #: The session's control socket (``invoke logs``/``restart``), when it listens.
    control: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the supervisor that wrote this still runs (same pid, same start)."""
        return proctree.is_alive(self.supervisor_pid, self.supervisor_start)

    @property
    def marker(self) -> str:
        """The ``CAPRONI_TASKS_SESSION`` value every process of this session inherits."""
        return session_marker(self.config, self.supervisor_pid, self.supervisor_start)

    def process(self, reloader: str, name: str) -> ProcessRecord | None:
        for record in self.processes:
            if record.reloader == reloader and record.name == name:
                return record
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> SessionRecord:
        """The record in ``data`` (parsed JSON); `SessionFileError` when it is not one."""
        fields = _object(data, "the file")
        reloaders = fields.get("reloaders", {})
        if not isinstance(reloaders, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in reloaders.items()
        ):
            raise SessionFileError("reloaders is not a map of names to kinds")
        processes = fields.get("processes", [])
        if not isinstance(processes, list):
            raise SessionFileError("processes is not a list")
        return cls(
            config=_text(fields, "config", "the file"),
            supervisor_pid=_pid(fields, "supervisor_pid", "the file"),
            supervisor_start=_optional_number(fields, "supervisor_start", "the file"),
            started_at=_number(fields, "started_at", "the file"),
            updated_at=_optional_number(fields, "updated_at", "the file") or 0.0,
            reloaders=dict(reloaders),
            processes=[
                ProcessRecord.from_json(p, f"process {i + 1}") for i, p in enumerate(processes)
            ],
            version=_integer(fields, "version", "the file", default=FORMAT_VERSION),
            control=_optional_text(fields, "control", "the file"),
        )


# -- shape checks of a parsed state file -----------------------------------------------


def _object(data: object, where: str) -> dict[str, object]:
    if not isinstance(data, dict):
        raise SessionFileError(f"{where} is not a JSON object")
    return data


def _text(fields: dict[str, object], key: str, where: str, default: str | None = None) -> str:
    value = fields.get(key, default)
    if not isinstance(value, str):
        raise SessionFileError(f"{where}: {key} is not a string")
    return value


def _optional_text(fields: dict[str, object], key: str, where: str) -> str | None:
    if fields.get(key) is None:
        return None
    return _text(fields, key, where)


def _optional_pid(fields: dict[str, object], key: str, where: str) -> int | None:
    if fields.get(key) is None:
        return None
    return _pid(fields, key, where)


def _pid(fields: dict[str, object], key: str, where: str) -> int:
    value = fields.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    raise SessionFileError(f"{where}: {key} is not a process id")


def _integer(
    fields: dict[str, object], key: str, where: str, *, default: int, minimum: int | None = None
) -> int:
    value = fields.get(key, default)
    in_range = minimum is None or (isinstance(value, int) and value >= minimum)
    if isinstance(value, int) and not isinstance(value, bool) and in_range:
        return value
    raise SessionFileError(f"{where}: {key} is not a whole number")


def _optional_integer(fields: dict[str, object], key: str, where: str) -> int | None:
    if fields.get(key) is None:
        return None
    return _integer(fields, key, where, default=0)


def _number(fields: dict[str, object], key: str, where: str) -> float:
    value = fields.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise SessionFileError(f"{where}: {key} is not a number")


def _optional_number(fields: dict[str, object], key: str, where: str) -> float | None:
    if fields.get(key) is None:
        return None
    return _number(fields, key, where)


def _signal_name(fields: dict[str, object], key: str, where: str) -> str:
    name = _text(fields, key, where, default="SIGTERM")
    try:
        proctree.signal_number(name)
    except ValueError:
        raise SessionFileError(f"{where}: {key} is not a signal") from None
    return name


def _optional_seconds(fields: dict[str, object], key: str, where: str) -> float | None:
    value = _optional_number(fields, key, where)
    if value is not None and value < 0:
        raise SessionFileError(f"{where}: {key} is negative")
    return value


# -- reading and writing ---------------------------------------------------------------


@dataclass(frozen=True)
class SessionState:
    """What the state file of a config says: a record, a problem, or nothing at all."""

    path: Path
    record: SessionRecord | None = None
    #: Why a file that exists is not usable (unreadable, not JSON, not the shape).
    problem: str | None = None

    @property
    def exists(self) -> bool:
        return self.record is not None or self.problem is not None

    @property
    def stale(self) -> bool:
        """A file whose supervisor is gone, or that names none: nothing runs it."""
        return self.exists and (self.record is None or not self.record.alive)


def write_session(path: Path, record: SessionRecord) -> None:
    """Replace the state file in one step: readers see the old or the new file, whole.

    Not fsynced: the file describes running processes, which a power cut ends anyway,
    and the write must stay cheap on the event loop.
    """
    record.updated_at = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record.to_json(), indent=1), mode=0o600, durable=False)


def load_session(config_path: Path) -> SessionState:
    """The state file of ``config_path`` read and checked; never raises."""
    path = session_file(config_path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return SessionState(path)
    except OSError as exc:
        return SessionState(path, problem=f"cannot read it: {exc.strerror or exc}")
    if len(raw) > _MAX_STATE_BYTES:
        return SessionState(path, problem="it is far too large to be a state file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return SessionState(path, problem="it is not text")
    except RecursionError:
        return SessionState(path, problem="it is not a session record (nested too deeply)")
    except ValueError as exc:
        return SessionState(path, problem=f"it is not valid JSON ({exc})")
    try:
        return SessionState(path, record=SessionRecord.from_json(data))
    except SessionFileError as exc:
        return SessionState(path, problem=f"it is not a session record ({exc})")


def read_session(config_path: Path) -> SessionRecord | None:
    """The recorded session of ``config_path``, or None (no file, or unusable)."""
    return load_session(config_path).record


def control_socket(config_path: Path) -> Path:
    """Where the session of ``config_path`` listens for ``invoke logs``/``restart``."""
    return sessions_dir() / f"{_config_key(config_path)}.sock"


def remove_session(config_path: Path) -> None:
    for path in (session_file(config_path), control_socket(config_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def current_process_start() -> float | None:
    """This process's create time (with its pid, its identity)."""
    info = proctree.read_process(os.getpid())
    return info.started if info else None


# -- leftovers -------------------------------------------------------------------------


def leftovers(record: SessionRecord) -> list[proctree.ProcInfo]:
    """Live processes of a stale session's process groups that are still ours (see
    `leftover_groups`)."""
    found = {m.pid: m for _, members in leftover_groups(record) for m in members}
    return sorted(found.values(), key=lambda p: p.pid)


def leftover_groups(
    record: SessionRecord,
) -> list[tuple[ProcessRecord, list[proctree.ProcInfo]]]:
    """Each recorded process with the live members of its group that are still ours.

    A group counts only when it is still a session of its own (``sid == pgid``, as the
    supervisor created it), its number is not held by another process than the
    recorded leader (same pid, same start time), and its members started no earlier
    than that leader did — a pid/pgid reused by an unrelated program is never touched.
    """
    groups: list[tuple[ProcessRecord, list[proctree.ProcInfo]]] = []
    for proc in record.processes:
        if proc.pgid is None or proc.pid_start is None or proc.pid is None:
            continue
        holder = proctree.read_process(proc.pid)
        if holder is not None and not proctree.same_start(proc.pid_start, holder.started):
            continue  # the number now belongs to another process: so does the group
        members: list[proctree.ProcInfo] = []
        for member in proctree.group_members(proc.pgid):
            if member.sid != proc.pgid:
                continue
            same_leader = member.pid == proc.pid and proctree.same_start(
                proc.pid_start, member.started
            )
            if same_leader or member.started >= proc.pid_start:
                members.append(member)
        if members:
            groups.append((proc, sorted(members, key=lambda p: p.pid)))
    return groups


def marked_leftovers(config_path: Path) -> list[proctree.ProcInfo]:
    """Processes marked as a session of ``config_path`` whose supervisor is gone."""
    key = _config_key(config_path)
    supervisors: dict[tuple[int, float], bool] = {}
    found: list[proctree.ProcInfo] = []
    for info, value in proctree.marked_processes():
        parsed = _parse_marker(value)
        if parsed is None or parsed[0] != key:
            continue
        supervisor = parsed[1], parsed[2]
        if supervisor not in supervisors:
            supervisors[supervisor] = proctree.is_alive(*supervisor)
        if not supervisors[supervisor]:
            found.append(info)
    return found


def _marked_with(marker: str) -> list[proctree.ProcInfo]:
    return [info for info, value in proctree.marked_processes() if value == marker]


@dataclass
class _Stopping:
    """Processes stopped together: ``sig``, ``timeout`` seconds, then SIGTERM for
    ``term_grace`` seconds (when ``sig`` was not SIGTERM and ``term_grace`` > 0)."""

    targets: list[proctree.ProcInfo]
    sig: int = signal.SIGTERM
    timeout: float = 3.0
    term_grace: float = 0.0
    deadline: float = 0.0
    termed: bool = False
    done: bool = False

    def alive(self) -> list[proctree.ProcInfo]:
        return [t for t in self.targets if proctree.is_alive(t.pid, t.started)]

    def start(self, now: float) -> None:
        proctree.signal_pids(self.targets, self.sig)
        self.deadline = now + self.timeout

    def step(self, now: float) -> None:
        """Mark done once nothing is left or its signals have had their time."""
        if not self.alive():
            self.done = True
        elif now >= self.deadline:
            if not self.termed and self.sig != signal.SIGTERM and self.term_grace > 0:
                self.termed = True
                proctree.signal_pids(self.targets, signal.SIGTERM)
                self.deadline = now + self.term_grace
            else:
                self.done = True


def _stop(
    targets: list[proctree.ProcInfo],
    grace: float,
    more: Callable[[], list[proctree.ProcInfo]] | None = None,
    groups: Sequence[_Stopping] = (),
) -> tuple[list[int], list[int]]:
    """Stop ``groups`` each its own way and ``targets`` with SIGTERM and ``grace``
    seconds, all at once; then SIGKILL whatever is left. ``more()`` finds newcomers (a
    process that forked while being stopped) before the SIGKILL. Returns (stopped,
    survivors)."""
    claimed = {t.pid for g in groups for t in g.targets}
    rest = [t for t in targets if t.pid not in claimed]
    phases = [*groups, _Stopping(rest, signal.SIGTERM, grace)] if rest else list(groups)
    by_pid = {t.pid: t for phase in phases for t in phase.targets}

    def alive() -> list[proctree.ProcInfo]:
        return [t for t in by_pid.values() if proctree.is_alive(t.pid, t.started)]

    if not by_pid:
        return [], []
    now = time.monotonic()
    for phase in phases:
        phase.start(now)
    while True:
        now = time.monotonic()
        for phase in phases:
            if not phase.done:
                phase.step(now)
        if all(phase.done for phase in phases):
            break
        time.sleep(0.02)
    if more is not None:
        for info in more():
            by_pid.setdefault(info.pid, info)
    proctree.signal_pids(alive(), signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and alive():
        time.sleep(0.02)
    return sorted(by_pid), sorted(t.pid for t in alive())


def stop_marked(marker: str, *, grace: float = 3.0) -> tuple[list[int], list[int]]:
    """Stop every process that carries ``marker`` (a shutdown's last sweep: daemons
    that left both their group and our tree). Returns (stopped, survivors)."""
    return _stop(_marked_with(marker), grace, lambda: _marked_with(marker))


@dataclass
class CleanReport:
    path: Path | None = None
    found: bool = False  # a state file existed
    stale: bool = False
    #: Why the state file was unusable (it was removed all the same).
    problem: str | None = None
    alive_pid: int | None = None  # a live supervisor: nothing was touched
    killed: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    removed: bool = False
    #: Why the stale state file could not be removed.
    remove_error: str | None = None

    def summary(self) -> str:
        """One line on what a clean did (for `invoke run`, which cleans before it starts)."""
        what = (
            f"ignored an unusable state file {self.path}: {self.problem}"
            if self.problem
            else "cleaned up after a previous session that crashed"
        )
        if self.killed:
            what += f"; stopped {len(self.killed)} leftover processes"
        if self.survivors:
            what += f" (could not stop {', '.join(map(str, self.survivors))})"
        return what


def clean_session(config_path: Path, *, grace: float = 3.0) -> CleanReport:
    """Stop what a crashed session left running and remove its state file.

    Never touches a session whose supervisor is alive. Leftovers are the recorded
    process groups that are provably still ours and every process marked as a session
    of this config whose supervisor is gone. A recorded group is stopped as the
    supervisor would have stopped it: its stop signal, its ``stop_timeout``, then
    SIGTERM (given its ``term_grace``) when that was not the stop signal, then SIGKILL.
    Other leftovers (and groups recorded without a stop signal) get SIGTERM, then
    SIGKILL after ``grace`` seconds. An unusable state file is removed like a stale one.
    """
    state = load_session(config_path)
    report = CleanReport(path=state.path, found=state.exists, problem=state.problem)
    record = state.record
    if record is not None and record.alive:
        report.alive_pid = record.supervisor_pid
        return report
    report.stale = state.exists
    groups = [
        _Stopping(
            members,
            proctree.signal_number(proc.stop_signal),
            grace if proc.stop_timeout is None else proc.stop_timeout,
            proc.term_grace,
        )
        for proc, members in (leftover_groups(record) if record is not None else [])
    ]
    report.killed, report.survivors = _stop(
        marked_leftovers(config_path), grace, lambda: marked_leftovers(config_path), groups
    )
    with contextlib.suppress(OSError):
        control_socket(config_path).unlink()  # nobody listens on it any more
    if state.exists:
        try:
            state.path.unlink()
            report.removed = True
        except FileNotFoundError:
            report.removed = True
        except OSError as exc:
            report.remove_error = exc.strerror or str(exc)
    return report
