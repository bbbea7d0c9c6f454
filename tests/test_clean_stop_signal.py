"""`invoke clean` after a crashed session stops each leftover process the way the
supervisor would have: its own stop signal (recorded in the session state), its
``stop_timeout``, then TERM/KILL. Real `invoke run`, SIGKILL by pid, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_processes import pid_alive, read_pid, wait_until
from helpers_session import make_project, python_on_path, run_invoke, start_invoke_run

from caproni_tasks.reloader.session import (
    ProcessRecord,
    SessionFileError,
    SessionRecord,
    clean_session,
    read_session,
)

pytestmark = [pytest.mark.timeout(90)]

#: A process that writes each signal it receives to ``NAME.got`` and exits on ``EXIT_ON``
#: (``-``: on none); run as ``python3 signals.py NAME EXIT_ON``.
SIGNALS_PY = """\
import os, signal, sys

name, exit_on = sys.argv[1], sys.argv[2]


def on_signal(signum, frame):
    with open(name + ".got", "a") as handle:
        handle.write(signal.Signals(signum).name + "\\n")
    if signal.Signals(signum).name == exit_on:
        sys.exit(0)


for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, on_signal)
with open(name + ".pid.tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.rename(name + ".pid.tmp", name + ".pid")
while True:
    signal.pause()
"""

# `polite` stops on SIGINT, its stop signal, and ignores SIGTERM; `plain` keeps the
# default stop signal (SIGTERM). What each receives is in its .got file.
CONFIG = """\
version: 2
reloaders:
  app:
    type: process
    process:
      processes:
        polite:
          command: exec python3 signals.py polite SIGINT
          stop_signal: SIGINT
          stop_timeout: 30
        plain:
          command: exec python3 signals.py plain SIGTERM
          stop_timeout: 30
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = make_project(tmp_path / "project", CONFIG, **{"signals.py": SIGNALS_PY})
    yield root
    clean_session(root / "caproni.yaml", grace=0.5)


def test_clean_stops_leftovers_with_their_own_stop_signal(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    subprocess_env = python_on_path(subprocess_env)
    run = start_invoke_run(project, subprocess_env, project / "run.log")
    try:
        polite = wait_until(lambda: read_pid(project / "polite.pid"), 30)
        plain = wait_until(lambda: read_pid(project / "plain.pid"), 30)

        def recorded() -> bool:
            record = read_session(project / "caproni.yaml")
            names = {p.name for p in record.processes if p.pid} if record else set()
            return names == {"polite", "plain"}

        wait_until(recorded, 30)
        record = read_session(project / "caproni.yaml")
        assert record is not None
        stops = {p.name: (p.stop_signal, p.stop_timeout, p.term_grace) for p in record.processes}
        assert stops == {"polite": ("SIGINT", 30.0, 0.0), "plain": ("SIGTERM", 30.0, 0.0)}

        run.send_signal(signal.SIGKILL)  # a crash: nothing stops the processes
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert pid_alive(polite) and pid_alive(plain)

    began = time.monotonic()
    cleaned = run_invoke(project, subprocess_env, "clean")
    took = time.monotonic() - began
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not pid_alive(polite) and not pid_alive(plain)
    # Each got its own stop signal and exited on it: no wait for its 30 s stop_timeout,
    # no SIGKILL (which would have left no file).
    assert (project / "polite.got").read_text() == "SIGINT\n"
    assert (project / "plain.got").read_text() == "SIGTERM\n"
    assert took < 20, took
    again = run_invoke(project, subprocess_env, "clean")
    assert "nothing to clean" in again.stdout


def test_clean_falls_back_to_term_then_kill_after_the_stop_timeout(tmp_path: Path) -> None:
    """A process that ignores its stop signal gets SIGTERM after its stop_timeout (when
    that was not the stop signal; given term_grace), then SIGKILL."""
    (tmp_path / "signals.py").write_text(SIGNALS_PY)
    child = subprocess.Popen(
        [sys.executable, "signals.py", "deaf", "-"],
        cwd=tmp_path,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        from caproni_tasks.reloader import proctree
        from caproni_tasks.reloader.session import session_file, write_session

        wait_until(lambda: read_pid(tmp_path / "deaf.pid"), 10)  # its handlers are set
        info = proctree.read_process(child.pid)
        assert info is not None
        config = tmp_path / "caproni.yaml"
        write_session(
            session_file(config),
            SessionRecord(
                config=str(config),
                supervisor_pid=child.pid,
                supervisor_start=info.started - 100,  # a supervisor long gone
                started_at=time.time(),
                reloaders={"r": "process"},
                processes=[
                    ProcessRecord(
                        "r",
                        "deaf",
                        "ready",
                        pid=child.pid,
                        pgid=child.pid,
                        pid_start=info.started,
                        stop_signal="SIGINT",
                        stop_timeout=0.5,
                        term_grace=0.5,
                    )
                ],
            ),
        )
        report = clean_session(config, grace=5.0)
        assert report.killed == [child.pid] and report.survivors == []
        assert child.wait(5) == -signal.SIGKILL
        assert (tmp_path / "deaf.got").read_text().split() == ["SIGINT", "SIGTERM"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)


def test_a_record_with_an_unknown_stop_signal_is_unusable() -> None:
    with pytest.raises(SessionFileError, match="stop_signal is not a signal"):
        ProcessRecord.from_json(
            {"reloader": "r", "name": "p", "state": "ready", "stop_signal": "SIGNOPE"}, "p"
        )
    old = ProcessRecord.from_json({"reloader": "r", "name": "p", "state": "ready"}, "p")
    assert (old.stop_signal, old.stop_timeout, old.term_grace) == ("SIGTERM", None, 0.0)
