"""Reliability of sessions and their processes (issue 11, "Processes"): corrupted state
files, daemons that escape every tree, consumers that stop reading our output."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_processes import CapturedOutput, fast_options, pid_alive, read_pid, wait_until
from helpers_session import InvokeSession, make_project, python_on_path

from caproni_tasks.reloader import proctree
from caproni_tasks.reloader.output import Output
from caproni_tasks.reloader.session import (
    SessionRecord,
    current_process_start,
    load_session,
    session_file,
)

pytestmark = [pytest.mark.timeout(120)]

ONE_SHOT = """\
version: 2
reloaders:
  once:
    type: process
    process:
      processes:
        job:
          command: echo job-done
"""


class Project(InvokeSession):
    """A project directory with `invoke` run the way users run it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root, env)
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def config(self) -> Path:
        return self.root / "caproni.yaml"

    @property
    def state(self) -> Path:
        return session_file(self.config)

    def start_run(self) -> subprocess.Popen[bytes]:
        """`invoke run` with its stdout a pipe that the test reads (or does not)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "run"],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc


@pytest.fixture
def project(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Project]:
    root = make_project(tmp_path / "project", ONE_SHOT)
    env = python_on_path(subprocess_env)
    env.pop(proctree.MARKER_ENV, None)
    running = Project(root, env)
    try:
        yield running
    finally:
        for proc in running.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        from caproni_tasks.reloader.session import clean_session

        clean_session(running.config, grace=0.5)


# -- item 8: a corrupted state file is stale, never a traceback or a block -------------

_RECORD = {
    "config": "/x/caproni.yaml",
    "supervisor_pid": 1,
    "supervisor_start": None,
    "started_at": 1.0,
    "reloaders": {"once": "process"},
    "processes": [],
}


def _with(**changes: Any) -> bytes:
    return json.dumps({**_RECORD, **changes}).encode()


CORRUPT = {
    "list": b"[]",
    "null": b"null",
    "string": b'"hello"',
    "string-pid": _with(supervisor_pid="123"),
    "bool-pid": _with(supervisor_pid=True),
    "negative-pid": _with(supervisor_pid=-5),
    "huge-pid": _with(supervisor_pid=2**70),
    "nan-start": _with(started_at=float("nan")),
    "processes-not-list": _with(processes={"a": 1}),
    "process-not-object": _with(processes=[3]),
    "process-string-pid": _with(
        processes=[{"reloader": "once", "name": "job", "state": "ready", "pid": "7"}]
    ),
    "reloaders-not-map": _with(reloaders=["once"]),
    "truncated": _with()[:25],
    "binary": b"\x00\xff\xfe\x89PNG junk\x00",
    "nested": b"[" * 200_000,
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_an_ill_shaped_state_file_is_a_problem_not_an_exception(
    tmp_path: Path, content: bytes
) -> None:
    config = tmp_path / "caproni.yaml"
    path = session_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    state = load_session(config)
    assert state.record is None
    assert state.problem and "\n" not in state.problem
    assert state.exists and state.stale


def test_a_pid_without_a_start_time_is_not_running() -> None:
    """pid 1 runs, but nothing proves it is the supervisor that wrote the record."""
    record = SessionRecord.from_json(json.loads(_with()))
    assert record.supervisor_pid == 1 and record.supervisor_start is None
    assert not record.alive
    me = SessionRecord.from_json(
        json.loads(_with(supervisor_pid=os.getpid(), supervisor_start=current_process_start()))
    )
    assert me.alive
    other = SessionRecord.from_json(
        json.loads(_with(supervisor_pid=os.getpid(), supervisor_start=current_process_start() - 5))
    )
    assert not other.alive  # same pid, another start: a reused pid


def test_the_state_file_is_written_through_the_shared_atomic_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caproni_tasks.reloader import session as session_module

    calls: list[Path] = []
    real = session_module.write_atomic

    def spy(path: Path, data: bytes | str, **options: Any) -> None:
        calls.append(path)
        real(path, data, **options)

    monkeypatch.setattr(session_module, "write_atomic", spy)
    config = tmp_path / "caproni.yaml"
    record = SessionRecord(str(config), os.getpid(), current_process_start(), time.time())
    session_module.write_session(session_file(config), record)
    assert calls == [session_file(config)]
    assert load_session(config).record == record
    assert [p.name for p in session_file(config).parent.iterdir()] == [session_file(config).name]


SHOWN = ["list", "null", "string-pid", "truncated", "binary"]


@pytest.mark.parametrize("name", SHOWN)
def test_status_and_clean_report_a_corrupted_state_file(project: Project, name: str) -> None:
    project.state.parent.mkdir(parents=True, exist_ok=True)
    project.state.write_bytes(CORRUPT[name])
    status = project.invoke("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Traceback" not in status.stdout + status.stderr
    stale = [line for line in status.stdout.splitlines() if line.startswith("session:")]
    assert len(stale) == 1 and "stale" in stale[0] and str(project.state) in stale[0]
    data = project.status()
    assert data["session"]["state"] == "stale" and data["session"]["file"] == str(project.state)

    cleaned = project.invoke("clean")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "Traceback" not in cleaned.stdout + cleaned.stderr
    assert f"removed an unusable state file {project.state}" in cleaned.stdout
    assert not project.state.exists()
    assert project.status()["session"]["state"] == "none"


@pytest.mark.parametrize("name", ["list", "pid-1-no-start"])
def test_run_starts_over_a_corrupted_state_file(project: Project, name: str) -> None:
    """`[]` was a traceback; pid 1 without a start time blocked `run` for good."""
    content = CORRUPT.get(name) or _with(config=str(project.config))
    project.state.parent.mkdir(parents=True, exist_ok=True)
    project.state.write_bytes(content)
    result = project.invoke("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "job-done" in result.stdout
    assert "already running" not in result.stderr
    assert not project.state.exists()


# -- item 11: daemons found by the session marker ----------------------------------------

DAEMON_PY = """\
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(300)
    os._exit(0)
"""


@pytest.mark.anyio
async def test_shutdown_stops_a_daemon_outside_every_tree_by_its_marker(tmp_path: Path) -> None:
    """Without the subreaper (macOS has none) a double-forked setsid daemon belongs to no
    group or tree of ours; its inherited marker is what finds it."""
    from caproni_tasks.config.loader import load_config
    from caproni_tasks.reloader.runner import run_session

    (tmp_path / "daemon.py").write_text(DAEMON_PY)
    (tmp_path / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        f"        web:\n          command: {sys.executable} daemon.py daemon.pid; exec sleep 300\n"
    )
    config = load_config(tmp_path / "caproni.yaml").config
    assert config is not None
    output = CapturedOutput()
    task = asyncio.create_task(
        run_session(
            config, options=fast_options(), output=output, handle_signals=False, subreaper=False
        )
    )
    try:
        deadline = time.monotonic() + 30
        while (daemon := read_pid(tmp_path / "daemon.pid")) is None:
            assert time.monotonic() < deadline and not task.done(), output.text
            await asyncio.sleep(0.02)
        info = proctree.read_process(daemon)
        assert info is not None and info.sid != os.getsid(0)  # a session of its own
        marked = {i.pid: value for i, value in proctree.marked_processes()}
        assert daemon in marked
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    deadline = time.monotonic() + 10
    while pid_alive(daemon):
        assert time.monotonic() < deadline, "the daemon outlived its session"
        await asyncio.sleep(0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_marked_processes_skip_environments_we_may_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psutil

    child = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, proctree.MARKER_ENV: "k:1:2.0"}, start_new_session=True
    )
    try:
        wait_until(lambda: any(i.pid == child.pid for i, _ in proctree.marked_processes()))
        real = psutil.Process.environ

        def denied(self: psutil.Process) -> dict[str, str]:
            if self.pid == child.pid:
                raise psutil.AccessDenied(self.pid)
            return real(self)

        monkeypatch.setattr(psutil.Process, "environ", denied)
        assert all(i.pid != child.pid for i, _ in proctree.marked_processes())
    finally:
        child.kill()
        child.wait()


def test_a_recorded_process_is_signalled_only_if_its_create_time_matches() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        info = proctree.read_process(child.pid)
        assert info is not None
        impostor = proctree.ProcInfo(
            info.pid, info.ppid, info.pgid, info.sid, False, info.started - 10
        )
        proctree.signal_pids([impostor], signal.SIGKILL)
        assert child.poll() is None  # "another process" with that pid: left alone
        proctree.signal_pids([info], signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# -- item 12: output never blocks supervision ------------------------------------------


def test_output_to_a_stuck_consumer_drops_lines_and_counts_them() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "wb", buffering=0)
    output = Output(stream, color=False, limit=64 * 1024)  # type: ignore[arg-type]
    finished = threading.Event()

    def produce() -> None:
        for index in range(20_000):  # ~2 MB: far beyond the pipe and the buffer
            output.lines("spam", [f"line {index:06d} ".encode() + b"x" * 80])
        output.event("spam", "last words")
        finished.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        # Nobody reads: the producer (the event loop, in a session) must not block.
        assert finished.wait(20), "writing blocked on a consumer that does not read"
        assert output.dropped_total > 0
        received = bytearray()
        deadline = time.monotonic() + 20
        while b"lines dropped" not in received or not received.endswith(b"\n"):
            assert time.monotonic() < deadline, received[-300:]
            received += os.read(read_end, 65536)
        text = received.decode()
        # One notice per episode of drops (a loaded machine may drain in between).
        notices = [line for line in text.splitlines() if "dropped" in line]
        assert notices and all(
            n.endswith("lines dropped: output consumer too slow") for n in notices
        )
        counts = [int(n.split(":: ")[1].split()[0]) for n in notices]
        assert all(c > 0 for c in counts) and sum(counts) <= output.dropped_total
        assert "line 000000" in text  # what fitted came through, in order
    finally:
        output.close(0.5)
        os.close(read_end)
        stream.close()


def test_output_to_a_closed_pipe_calls_on_closed_once() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "wb", buffering=0)
    output = Output(stream, color=False)  # type: ignore[arg-type]
    calls: list[int] = []
    closed = threading.Event()
    output.on_closed = lambda: (calls.append(1), closed.set())
    output.event("x", "first")
    assert os.read(read_end, 100).endswith(b"first\n")
    os.close(read_end)
    # Detected with no further line (an idle pipe is watched) or on the next write.
    assert closed.wait(10)
    for _ in range(3):
        output.event("x", "more")
    assert calls == [1] and output.closed
    stream.close()


SPAM_CONFIG = """\
version: 2
reloaders:
  app:
    type: process
    process:
      processes:
        spam:
          command: >-
            python3 -c "import sys; sys.stdout.write(('x' * 99 + chr(10)) * 200000);
            sys.stdout.flush(); open('spam.done', 'w').close()"; exec sleep 300
        web:
          command: echo web-up; exec sleep 300
          watch: ["*.txt"]
"""


def _pipe_bytes(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def _processes(project: Project) -> dict[str, dict[str, Any]]:
    data = project.status()
    return {p["name"]: p for r in data["reloaders"] for p in r["processes"]}


def test_a_consumer_that_does_not_read_never_stalls_supervision(project: Project) -> None:
    project.config.write_text(SPAM_CONFIG)
    proc = project.start_run()
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    # 20 MB go through the supervisor while our end of its stdout holds one pipe-full:
    # it keeps reading its children although its own output cannot move.
    wait_until(lambda: (project.root / "spam.done").exists(), 60, interval=0.1)
    assert _pipe_bytes(out_fd) >= 4096  # full: nobody has read a byte

    # Supervision goes on: a change restarts web, and the state file says so.
    wait_until(lambda: _processes(project).get("web", {}).get("state") == "ready", 30, 0.2)
    (project.root / "poke.txt").write_text("go")
    wait_until(lambda: _processes(project)["web"]["restarts"] == 1, 30, 0.2)

    # Once the consumer reads again, the count of what was dropped appears.
    received = bytearray()
    reader_done = threading.Event()

    def read_all() -> None:
        while chunk := os.read(out_fd, 65536):
            received.extend(chunk)
        reader_done.set()

    threading.Thread(target=read_all, daemon=True).start()
    wait_until(lambda: b"output consumer too slow" in received, 30)
    wait_until(lambda: b"poke.txt changed: restarting" in received, 30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert reader_done.wait(10)
    text = received.decode(errors="replace")
    notice = [line for line in text.splitlines() if "output consumer too slow" in line]
    assert len(notice) >= 1 and "lines dropped" in notice[0]
    assert not project.state.exists()


QUIET_OR_TICKING = {
    "ticking": "echo $$$$ > tick.pid; while :; do echo tick; sleep 0.1; done",
    "quiet": "echo $$$$ > tick.pid; echo hello; exec sleep 300",
}


@pytest.mark.parametrize("command", QUIET_OR_TICKING.values(), ids=QUIET_OR_TICKING.keys())
def test_a_closed_stdout_ends_the_run_like_sigterm(project: Project, command: str) -> None:
    """`invoke run | head -1`: once head has its line the run ends by itself, stops
    its processes and removes its state, without a traceback."""
    (project.root / "daemon.py").write_text(DAEMON_PY)
    project.config.write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        f"        tick:\n          command: {command}\n"
        "        daemon:\n          command: python3 daemon.py daemon.pid; exec sleep 300\n"
    )
    proc = project.start_run()
    assert proc.stdout is not None and proc.stderr is not None
    ticker = wait_until(lambda: read_pid(project.root / "tick.pid"), 30)
    daemon = wait_until(lambda: read_pid(project.root / "daemon.pid"), 30)
    assert proc.stdout.readline()  # head -1 ...
    proc.stdout.close()  # ... and gone
    assert proc.wait(30) == 0
    errors = proc.stderr.read().decode(errors="replace")
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
    wait_until(lambda: not pid_alive(ticker) and not pid_alive(daemon), 10)
    assert not project.state.exists()
