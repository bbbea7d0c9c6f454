"""The OS child on its own (reloader/child.py): spawn, signal the group, reap."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from helpers_processes import anyio_backend, async_wait_until, pid_alive, read_pid

from caproni_tasks.reloader.child import Child

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]
__all__ = ["anyio_backend"]

#: Ignores SIGINT, exits on SIGTERM; leaves a grandchild in its group.
DEAF_TO_INT = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open("kid.pid.tmp", "w").write(str(kid.pid))
os.rename("kid.pid.tmp", "kid.pid")


def on_term(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("up", flush=True)
while True:
    signal.pause()
"""


def _child(tmp_path: Path, notes: list[str]) -> Child:
    (tmp_path / "deaf.py").write_text(DEAF_TO_INT)
    return Child(
        [sys.executable, "deaf.py"],
        cwd=tmp_path,
        env=dict(os.environ),
        keep_pids=set,
        notify=notes.append,
    )


async def test_stop_falls_back_to_term_then_clears_the_group(tmp_path: Path) -> None:
    notes: list[str] = []
    child = _child(tmp_path, notes)
    await child.start()
    assert child.running and child.pid is not None and child.pid_start is not None
    assert os.getpgid(child.pid) == child.pid  # a process group (session) of its own
    assert await child.stdout.readline() == b"up\n"
    kid = read_pid(tmp_path / "kid.pid")
    assert kid is not None and pid_alive(kid)

    await child.stop_leader(signal.SIGINT, stop_timeout=0.3, term_grace=5.0)
    assert child.returncode == 0
    assert notes == ["did not stop within 0.3s of SIGINT; terminating"]
    assert b"got SIGTERM" in await child.stdout.read()
    await child.clear_group(signal.SIGTERM, timeout=5.0)
    await async_wait_until(lambda: not pid_alive(kid))
    assert not child.group_alive()
    child.close()


async def test_a_spawn_that_cannot_start_raises(tmp_path: Path) -> None:
    child = Child(
        [str(tmp_path / "missing")],
        cwd=tmp_path,
        env={},
        keep_pids=set,
        notify=lambda _: None,
    )
    with pytest.raises(OSError):
        await child.start()
    assert not child.started and child.pid is None and child.returncode is None
