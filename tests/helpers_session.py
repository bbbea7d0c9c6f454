"""Helpers for tests that run `invoke` the way users do: a project directory with a
``tasks.py``, `invoke` subprocesses, and `InvokeSession`, an `invoke run` in the
background with its output in a log file, `invoke status --json` beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

__all__ = [
    "TASKS_PY",
    "InvokeSession",
    "invoke_captured",
    "invoke_exit_code",
    "make_project",
    "python_on_path",
    "run_invoke",
    "start_invoke_run",
]

#: The ``tasks.py`` of a project that uses every task of caproni_tasks.
TASKS_PY = "import caproni_tasks\nns = caproni_tasks.namespace()\n"


def make_project(root: Path, config: str | None = None, **files: str) -> Path:
    """``root`` (created) with a ``tasks.py``, ``caproni.yaml`` holding ``config`` when
    given, and ``files`` (name: text) beside them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tasks.py").write_text(TASKS_PY)
    if config is not None:
        (root / "caproni.yaml").write_text(config)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def invoke_exit_code(argv: list[str]) -> int:
    """Run the CLI in-process (`invoke ARGV` over every task); the exit code it would end
    with (1 for an exit with a message)."""
    from invoke.program import Program

    import caproni_tasks

    program = Program(namespace=caproni_tasks.namespace(), version="test")
    try:
        program.run(["invoke", *argv])
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def invoke_captured(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; its exit code, stdout and stderr (read from ``capsys``)."""
    from invoke.program import Program

    import caproni_tasks

    program = Program(namespace=caproni_tasks.namespace(), version="test")
    code = 0
    try:
        program.run(["invoke", *argv])
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def python_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with this interpreter's directory first on PATH (``python3`` in
    a process command is the test's Python)."""
    found = dict(env)
    found["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), found.get("PATH", "")])
    return found


def run_invoke(
    cwd: Path, env: Mapping[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m invoke ARGS`` in ``cwd``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_invoke_run(
    cwd: Path, env: Mapping[str, str], log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """``invoke run ARGS`` in the background, in a session of its own (signals by pid
    reach it alone), stdout and stderr into ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", "run", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


class InvokeSession:
    """An `invoke run` subprocess in the project ``root``, its output in ``log``
    (default ``root/run.log``); `invoke` runs other tasks there, `status` reads
    `invoke status --json` (asserting it succeeded unless ``check_status`` is off)."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *,
        log: Path | None = None,
        invoke_timeout: float = 60,
        check_status: bool = True,
    ) -> None:
        self.root = root
        self.env = env
        self.log = log if log is not None else root / "run.log"
        self.invoke_timeout = invoke_timeout
        self.check_status = check_status
        self.proc: subprocess.Popen[bytes] | None = None

    def invoke(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return run_invoke(
            self.root, self.env, *args, timeout=self.invoke_timeout if timeout is None else timeout
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        self.proc = start_invoke_run(self.root, self.env, self.log, *args)
        return self.proc

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        """True while `invoke run` runs; an AssertionError with its output once it ended."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"invoke run ended early:\n{self.output}")
        return True

    def status(self) -> dict[str, Any]:
        result = self.invoke("status", "--json")
        if self.check_status:
            assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def processes(self) -> dict[str, dict[str, Any]]:
        """The processes of `status`, by name."""
        return {
            p["name"]: p for reloader in self.status()["reloaders"] for p in reloader["processes"]
        }

    def kill(self) -> None:
        """SIGKILL `invoke run` if it still runs (what it started may be left behind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
