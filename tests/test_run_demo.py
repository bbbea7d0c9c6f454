"""The demo of the README, end to end: `invoke run` in examples/demo, then the edits the
walkthrough suggests, each seen through the client's output."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_processes import wait_until
from helpers_session import run_invoke, start_invoke_run

pytestmark = [pytest.mark.timeout(90)]

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_runs_and_reloads(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    project = tmp_path / "demo"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("__pycache__", ".tools"))
    config = project / "caproni.yaml"
    config.write_text(config.read_text().replace("8765", str(free_port())))
    env = dict(subprocess_env)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"

    validate = run_invoke(project, env, "validate", timeout=30)
    assert validate.returncode == 0, validate.stdout + validate.stderr

    log = project / "run.log"
    proc = start_invoke_run(project, env, log)

    def text() -> str:
        return log.read_text(errors="replace")

    try:
        wait_until(lambda: "the service says: *** Hello from caproni-tasks! ***" in text(), 40)
        assert "waiting for server to be ready" in text()

        (project / "config" / "greeting.txt").write_text("Bonjour\n")
        wait_until(lambda: "the service says: *** Bonjour ***" in text(), 30)
        assert "runtime variable greeting changed: restarting" in text()

        shared = project / "src" / "common" / "text.py"
        shared.write_text(
            shared.read_text().replace('f"*** {', 'f">>> {').replace('} ***"', '} <<<"')
        )
        wait_until(lambda: "the service says: >>> Bonjour <<<" in text(), 30)
        assert "src/common/text.py changed: restarting" in text()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, text()


def test_demo_server_on_a_busy_port_says_so(tmp_path: Path) -> None:
    """Another program on the demo's port: a one-line reason and what to do, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(DEMO / "src" / "server.py"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert f"replace every {port} in caproni.yaml" in result.stderr
