"""The inter-process file lock: exclusion, waiting callback, timeout, holder death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from caproni_tasks.packages.locking import FileLock, LockTimeoutError

HOLDER = """
import sys, time
from caproni_tasks.packages.locking import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start_holder(lock: Path, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_lock_waits_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    waits: list[str] = []
    order: list[str] = []
    first = FileLock(path)
    first.acquire()

    def second() -> None:
        with FileLock(path, timeout=60, on_wait=lambda: waits.append("waiting")):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    deadline = time.monotonic() + 30
    while not waits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waits == ["waiting"]
    order.append("first")
    first.release()
    thread.join(timeout=30)
    assert order == ["first", "second"]
    assert waits == ["waiting"]


def test_uncontended_lock_does_not_call_on_wait(tmp_path: Path) -> None:
    calls: list[int] = []
    with FileLock(tmp_path / "sub" / "x.lock", on_wait=lambda: calls.append(1)) as lock:
        assert lock.locked
    assert not lock.locked
    assert calls == []


def test_timeout_names_lock_and_holder(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    path = tmp_path / "x.lock"
    holder = start_holder(path, 120, subprocess_env)
    try:
        with pytest.raises(LockTimeoutError) as caught, FileLock(path, timeout=0.3):
            pass
        assert str(path) in str(caught.value)
        assert f"process {holder.pid}" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_killed_holder_is_free(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    path = tmp_path / "x.lock"
    holder = start_holder(path, 120, subprocess_env)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with FileLock(path, timeout=10):
        pass
    assert path.exists()


def test_processes_never_overlap(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    path = tmp_path / "x.lock"
    log = tmp_path / "log"
    script = """
import os, sys
from caproni_tasks.packages.locking import FileLock
for _ in range(20):
    with FileLock(sys.argv[1], timeout=120):
        with open(sys.argv[2], "a") as f:
            f.write("in\\n"); f.flush()
            f.write("out\\n")
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(log)], env=subprocess_env)
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = log.read_text().splitlines()
    assert lines == ["in", "out"] * 60
