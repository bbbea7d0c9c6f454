"""`invoke run` as users run it: a real subprocess, real signals, `status` and `clean`
from other processes."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_processes import pid_alive, read_pid, wait_until
from helpers_session import InvokeSession, make_project, python_on_path

pytestmark = [pytest.mark.timeout(90)]

DAEMON_PY = textwrap.dedent(
    """
    import os, sys, time
    # Double fork: the daemon's parent exits at once, so the daemon is re-parented.
    if os.fork() == 0:
        os.setsid()
        open("daemon.pid", "w").write(str(os.getpid()))
        time.sleep(300)
        sys.exit(0)
    """
)

CONFIG = """\
version: 2
reloaders:
  app:
    type: process
    process:
      processes:
        tree:
          command: sleep 300 & echo $$! > gc.pid; echo tree-up; wait
        daemon:
          command: python3 daemon.py; echo daemon-up; exec sleep 300
        stubborn:
          command: trap '' TERM; echo stubborn-up; while :; do sleep 0.1; done
          stop_timeout: 1
"""


@pytest.fixture
def session(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[InvokeSession]:
    project = make_project(tmp_path / "project", CONFIG, **{"daemon.py": DAEMON_PY})
    running = InvokeSession(project, python_on_path(subprocess_env), invoke_timeout=30)
    try:
        yield running
    finally:
        running.kill()
        from caproni_tasks.reloader.session import clean_session

        clean_session(project / "caproni.yaml", grace=0.5)


def _all_up(session: InvokeSession) -> bool:
    out = session.output
    return all(f"{name}-up" in out for name in ("tree", "daemon", "stubborn"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_leaves_no_process_behind(session: InvokeSession, signum: int) -> None:
    proc = session.start()
    wait_until(lambda: _all_up(session), 30)
    project = session.root
    grandchild = wait_until(lambda: read_pid(project / "gc.pid"))
    daemon = wait_until(lambda: read_pid(project / "daemon.pid"))
    leaders = [p["pid"] for p in session.processes().values()]
    assert len(leaders) == 3 and all(leaders)
    everyone = [*leaders, grandchild, daemon]
    assert all(pid_alive(p) for p in everyone)

    proc.send_signal(signum)
    assert proc.wait(30) == 0, session.output
    survivors = [p for p in everyone if pid_alive(p)]
    assert survivors == [], session.output
    out = session.output
    assert f"{signal.Signals(signum).name}: stopping every process" in out
    assert "did not stop within 1s of SIGTERM; killing" in out  # the stubborn one
    assert session.status()["session"]["state"] == "none"


def test_status_while_running_then_stale_after_sigkill_then_clean(session: InvokeSession) -> None:
    before = session.invoke("status")
    assert before.returncode == 0 and "session: not running" in before.stdout

    proc = session.start()
    wait_until(lambda: _all_up(session), 30)
    data = session.status()
    assert data["session"]["state"] == "running"
    assert data["session"]["pid"] == proc.pid
    procs = session.processes()
    assert {p["state"] for p in procs.values()} == {"ready"}
    table = session.invoke("status").stdout
    assert "session: running" in table
    assert "stubborn" in table and "ready" in table

    # A second session for the same config is refused while this one runs.
    second = session.invoke("run")
    assert second.returncode == 1
    assert "already running" in second.stderr

    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    pids = [p["pid"] for p in procs.values()]
    grandchild = read_pid(session.root / "gc.pid")
    assert grandchild and pid_alive(grandchild)
    # Detached with setsid, re-parented to init: found by the session marker alone.
    daemon = read_pid(session.root / "daemon.pid")
    assert daemon and pid_alive(daemon)
    stale = session.status()
    assert stale["session"]["state"] == "stale"
    assert {p["state"] for r in stale["reloaders"] for p in r["processes"]} == {"orphaned"}
    assert "stale" in session.invoke("status").stdout

    cleaned = session.invoke("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "leftover processes" in cleaned.stdout
    assert "removed the state of a stale session" in cleaned.stdout
    assert str(daemon) in cleaned.stdout
    wait_until(lambda: not any(pid_alive(p) for p in [*pids, grandchild, daemon]), 15)
    assert session.status()["session"]["state"] == "none"
    again = session.invoke("clean")
    assert "nothing to clean" in again.stdout


def test_run_refuses_a_config_with_errors(session: InvokeSession) -> None:
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        web:\n          command: true\n          restart: sometimes\n"
    )
    result = session.invoke("run")
    assert result.returncode == 1
    assert "caproni.yaml:9" in result.stdout
    assert "refusing to start" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_run_only_names_unknown_reloader(session: InvokeSession) -> None:
    result = session.invoke("run", "--only", "nope")
    assert result.returncode == 2
    assert "no reloader named nope (reloaders: app)" in result.stderr


def test_run_exits_when_every_process_ended_for_good(session: InvokeSession) -> None:
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  once:\n    type: process\n    process:\n      processes:\n"
        "        job:\n          command: echo job-done\n"
    )
    result = session.invoke("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job-done" in result.stdout


def test_validate_and_status_with_an_uncloned_repository(session: InvokeSession) -> None:
    (session.root / "caproni.yaml").write_text(
        "version: 2\n"
        "repositories:\n"
        "  app:\n"
        "    repository: https://example.com/app.git\n"
        "    directory: repos/app\n"
        "reloaders:\n"
        "  app:\n"
        "    type: process\n"
        "    repository: app\n"
        "    process:\n"
        "      processes:\n"
        "        web:\n"
        "          command: bin/server\n"
        "          directory: web\n"
    )
    validated = session.invoke("validate")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "ok (1 reloader)" in validated.stdout
    data = session.status()
    assert data["reloaders"][0]["state"] == "not-ready"
    assert "not cloned" in data["reloaders"][0]["reasons"][0]
    refused = session.invoke("run")
    assert refused.returncode == 1
    assert "clone repository app first" in refused.stderr


def test_second_interrupt_kills_at_once(session: InvokeSession) -> None:
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        stubborn:\n"
        "          command: trap '' TERM; echo stubborn-up; while :; do sleep 0.1; done\n"
        "          stop_timeout: 120\n"
    )
    proc = session.start()
    wait_until(lambda: "stubborn-up" in session.output, 30)
    pid = session.processes()["stubborn"]["pid"]
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: "SIGINT: stopping every process" in session.output, 10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0, session.output  # well before the 120 s grace period
    assert "interrupted again: killing every process now" in session.output
    assert not pid_alive(pid)


def test_status_reports_failed_after_max_restarts(session: InvokeSession) -> None:
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        crashy:\n          command: echo crashing; exit 4\n          max_restarts: 1\n"
        "        steady:\n          command: echo steady-up; exec sleep 300\n"
    )
    proc = session.start()

    def crashy_failed() -> bool:
        return session.processes().get("crashy", {}).get("state") == "failed"

    wait_until(crashy_failed, 30, interval=0.2)
    data = session.status()
    app = data["reloaders"][0]
    assert app["state"] == "failed"
    assert app["reasons"] == ["crashy exhausted its restarts"]
    crashy = session.processes()["crashy"]
    assert crashy["restarts"] == 1 and crashy["last_exit"] == 4
    table = session.invoke("status").stdout
    assert "failed" in table and "exit 4" in table
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_status_of_a_running_session_while_its_config_is_broken(session: InvokeSession) -> None:
    proc = session.start()
    wait_until(lambda: _all_up(session), 30)
    (session.root / "caproni.yaml").write_text("version: 2\nreloaders: [oops\n")
    result = session.invoke("status", "--json")
    assert result.returncode == 1
    assert "has errors" in result.stderr
    data = json.loads(result.stdout)
    assert data["session"]["state"] == "running"
    app = data["reloaders"][0]
    assert app["name"] == "app" and app["state"] == "unknown"
    assert {p["name"] for p in app["processes"]} == {"tree", "daemon", "stubborn"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_run_only_is_not_blocked_by_a_cluster_reloader_left_out(session: InvokeSession) -> None:
    """A real Caproni file has mirror reloaders out of edit mode: `--only` runs the
    process reloaders named, and nothing else is validated or mentioned."""
    (session.root / "caproni.yaml").write_text(
        "version: 2\ncluster: {name: dev}\nreloaders:\n"
        "  web:\n    type: mirror\n    mirror:\n"
        "      target: {namespace: default, kubernetes_type: deployment, name: web}\n"
        "  db:\n    type: process\n    process:\n      processes:\n"
        "        main: {command: sleep 300}\n        replica: {command: sleep 300}\n"
        "  once:\n    type: process\n    process:\n      processes:\n"
        "        job:\n          command: echo job-done\n"
        "          depends_on: [db]\n"
    )
    result = session.invoke("run", "--only", "once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job-done" in result.stdout
    everything = result.stdout + result.stderr
    assert everything.count("notice: ignoring 'cluster'") == 1  # one notice, not two
    # Dependencies left out by --only: one line naming them all.
    assert everything.count("not part of this session") == 1
    assert "depends on db.main, db.replica, which are not part of this session" in everything


def test_run_ends_with_a_summary_when_everything_failed(session: InvokeSession) -> None:
    """A command that is not found fails for good; its dependant gives up; `invoke run`
    says so and exits 1 instead of sitting there silently."""
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        api:\n          command: no-such-command-xyz --serve\n"
        "          max_restarts: 1\n          ready: {log: listening}\n"
        "        web:\n          command: echo web-up; exec sleep 300\n"
        "          depends_on: [api]\n"
    )
    result = session.invoke("run")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "exit 127 (command not found); failed after 1 restarts in a row" in out
    assert "not starting: api failed (exit 127 (command not found))" in out
    assert "every process has ended and none can restart: api failed" in out
    assert "web-up" not in out


def test_interrupt_while_waiting_for_readiness_leaves_nothing(session: InvokeSession) -> None:
    """Ctrl-C during startup: the server's readiness never comes and its dependant still
    waits; the session stops at once, grandchild included, and removes its state."""
    (session.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        server:\n"
        "          command: sleep 300 & echo $$! > gc.pid; echo server-up; exec sleep 300\n"
        "          ready: {tcp: 1}\n"
        "        client:\n          command: echo client-up; exec sleep 300\n"
        "          depends_on: [server]\n"
    )
    proc = session.start()
    wait_until(lambda: "waiting for server to be ready" in session.output, 30)
    grandchild = wait_until(lambda: read_pid(session.root / "gc.pid"), 30)
    server = wait_until(lambda: session.processes().get("server", {}).get("pid"), 30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, session.output
    assert not pid_alive(server) and not pid_alive(grandchild)
    assert "client-up" not in session.output
    assert session.status()["session"]["state"] == "none"


def test_config_option_points_at_a_file_elsewhere(session: InvokeSession, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "dev.yaml").write_text(
        "version: 2\nreloaders:\n  once:\n    type: process\n    process:\n      processes:\n"
        "        job:\n          command: pwd\n"
    )
    (other / "dev.local.yaml").write_text(
        "reloaders:\n  once:\n    process:\n      processes:\n"
        "        job:\n          command: echo from-the-overlay; pwd\n"
    )
    validated = session.invoke("validate", "--config", str(other / "dev.yaml"))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    result = session.invoke("run", "--config", str(other / "dev.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    # Processes run beside the config they come from, with its overlay applied.
    assert "from-the-overlay" in result.stdout
    assert f"| {other}\n" in result.stdout
    missing = session.invoke("run", "--config", str(other / "nope.yaml"))
    assert missing.returncode == 2
    assert "no such config file" in missing.stderr
