"""The process kind: status (cloned? executables? failed in the running session?) and
validate (nothing inside an uncloned repository fails)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from caproni_tasks.config import load_config
from caproni_tasks.config.model import CaproniConfig, ProcessSpec, ReloaderSpec
from caproni_tasks.reloader import RunFailedError, State, new_manager
from caproni_tasks.reloader.kinds.process import ProcessSettings, command_executable
from caproni_tasks.reloader.session import ProcessRecord, SessionRecord, session_file, write_session
from caproni_tasks.reloader.supervisor import Supervisor


@pytest.mark.parametrize(
    ("command", "program"),
    [
        ("python3 -m http.server", "python3"),
        ("FOO=1 BAR=2 node server.js", "node"),
        ("exec ./bin/server --port 1", "./bin/server"),
        ("echo hi; sleep 1", None),
        ("$HOME/bin/x", None),
        ("cd sub && make", None),
        ("'unterminated", None),
        ("env FOO=1 ruby app.rb", "ruby"),
    ],
)
def test_command_executable(command: str, program: str | None) -> None:
    assert command_executable(command) == program


def _config(tmp_path: Path, repo: Path, *processes: ProcessSpec) -> CaproniConfig:
    reloader = ReloaderSpec(
        name="app",
        type="process",
        directory=repo,
        repository="app",
        settings=ProcessSettings(tuple(processes)),
    )
    return CaproniConfig(path=tmp_path / "caproni.yaml", version=2, reloaders={"app": reloader})


def test_status_uncloned_repository_is_not_ready(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "app"
    config = _config(tmp_path, repo, ProcessSpec("web", "python3 -V", repo))
    status = new_manager("process").status(config.reloaders["app"], config)
    assert status.state is State.NOT_READY
    assert "not cloned" in status.message


def test_status_missing_executable_is_not_ready_and_present_is_ready(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path, ProcessSpec("web", "no-such-tool-xyz --serve", tmp_path))
    status = new_manager("process").status(config.reloaders["app"], config)
    assert status.state is State.NOT_READY
    assert "no-such-tool-xyz not found on PATH" in status.message
    script = tmp_path / "serve.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o755)
    config = _config(
        tmp_path,
        tmp_path,
        ProcessSpec("web", "./serve.sh", tmp_path),
        ProcessSpec("sh", "echo hi && sleep 1", tmp_path),
    )
    assert new_manager("process").status(config.reloaders["app"], config).state is State.READY


def test_status_failed_when_the_running_session_says_so(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        tmp_path,
        ProcessSpec("web", "true", tmp_path),
        ProcessSpec("worker", "true", tmp_path),
    )
    from caproni_tasks.reloader.session import current_process_start

    record = SessionRecord(
        config=str(config.path),
        supervisor_pid=os.getpid(),  # "running": this very process
        supervisor_start=current_process_start(),
        started_at=0.0,
        processes=[
            ProcessRecord(reloader="app", name="web", state="failed", restarts=10, started_at=1.0),
            # Never started: it gave up because what it depends on failed.
            ProcessRecord(reloader="app", name="worker", state="failed"),
        ],
    )
    write_session(session_file(config.path), record)
    status = new_manager("process").status(config.reloaders["app"], config)
    assert status.state is State.FAILED
    assert status.reasons == (
        "web exhausted its restarts",
        "worker did not start: a dependency failed",
    )
    # The same record from a supervisor that is gone does not count.
    record.supervisor_pid = 2**22 + 12345
    write_session(session_file(config.path), record)
    assert new_manager("process").status(config.reloaders["app"], config).state is State.READY


def test_validate_uncloned_repository_passes(tmp_path: Path) -> None:
    (tmp_path / "caproni.yaml").write_text(
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
        "          command: bin/not-there-yet --port 1\n"
        "          directory: services/web\n"
        "          watch:\n"
        "            - src/**\n"
    )
    result = load_config(tmp_path / "caproni.yaml")
    assert result.config is not None, result.diagnostics
    config = result.config
    manager = new_manager("process")
    assert manager.validate(config.reloaders["app"], config) == []
    assert manager.status(config.reloaders["app"], config).state is State.NOT_READY


def test_validate_cloned_repository_checks_directory_and_executable(tmp_path: Path) -> None:
    spec = ProcessSpec("web", "not-a-real-program-q", tmp_path / "missing")
    config = _config(tmp_path, tmp_path, spec, ProcessSpec("ok", "true", tmp_path))
    found = new_manager("process").validate(config.reloaders["app"], config)
    assert [d.code for d in found] == ["process-directory"]
    spec = ProcessSpec("web", "not-a-real-program-q", tmp_path, ignore=("../outside/**",))
    config = _config(tmp_path, tmp_path, spec)
    codes = sorted(d.code for d in new_manager("process").validate(config.reloaders["app"], config))
    assert codes == ["process-executable", "process-watch-outside"]


@pytest.mark.anyio
async def test_run_refuses_an_uncloned_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repos" / "app"
    config = _config(tmp_path, repo, ProcessSpec("web", "true", repo))
    with pytest.raises(RunFailedError, match="clone repository app first"):
        await new_manager("process").run(config.reloaders["app"], config, Supervisor())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_leftovers_skip_groups_whose_number_was_reused(tmp_path: Path) -> None:
    """A recorded pid now held by another process (different start time) is not ours."""
    import subprocess

    from caproni_tasks.reloader import proctree
    from caproni_tasks.reloader.session import leftovers

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        info = proctree.read_process(child.pid)
        assert info is not None
        record = SessionRecord(config="x", supervisor_pid=1, supervisor_start=None, started_at=0)
        record.processes = [
            ProcessRecord("r", "p", "ready", pid=child.pid, pgid=child.pid, pid_start=info.started)
        ]
        assert [p.pid for p in leftovers(record)] == [child.pid]
        record.processes[0].pid_start = info.started - 1  # "an earlier process"
        assert leftovers(record) == []
    finally:
        child.kill()
        child.wait()
