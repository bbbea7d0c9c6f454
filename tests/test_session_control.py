"""Controlling a running `invoke run` from another terminal (logs, restart, status
--wait over the control socket), `invoke exec`, env files, the real pid and the last
exit in status, validate's warnings and `invoke var NAME` — all end to end: real
processes, a real socket, real signals by pid."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_processes import pid_alive, wait_until
from helpers_session import InvokeSession, make_project

from caproni_tasks.config.dotenv import DotenvError, parse_dotenv
from caproni_tasks.reloader.shellcmd import command_argv

pytestmark = [pytest.mark.timeout(120)]

CONFIG = """\
version: 2
variables:
  GREETING: hi
reloaders:
  app:
    type: process
    env_file: app.env
    process:
      processes:
        web:
          command: python3 -u serve.py
          env_file: web.env
          env: {FROM_ENV: env-wins}
          ready: {log: serving}
        worker:
          command: echo worker-up; exec sleep 300
"""

SERVE_PY = textwrap.dedent(
    """
    import os, time
    print("serving", os.environ["SHARED"], os.environ["OWN"], os.environ["FROM_ENV"])
    time.sleep(300)
    """
)


class Project(InvokeSession):
    def stop(self) -> None:
        """SIGTERM to `invoke run`: a clean stop."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def project(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Project]:
    root = make_project(
        tmp_path / "p",
        CONFIG,
        **{
            "serve.py": SERVE_PY,
            "app.env": "# shared\nexport SHARED='from app.env'\nOWN=overridden\n",
            "web.env": 'OWN="from web.env" # own\nFROM_ENV=file\n',
        },
    )
    env = dict(subprocess_env)
    env.pop("NO_COLOR", None)
    handle = Project(root, env, check_status=False)
    try:
        yield handle
    finally:
        handle.stop()


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_logs_restart_status_wait_and_the_real_pid(project: Project) -> None:
    project.start()
    waited = project.invoke("status", "--wait", "ready", "--timeout", "60")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert waited.stdout.strip() == "ready: web, worker"

    # The socket: recorded in the state file, owner-only.
    from caproni_tasks.reloader.session import read_session

    record = read_session((project.root / "caproni.yaml").resolve())
    assert record is not None and record.control is not None
    mode = os.stat(record.control).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(record.control).parent).st_mode) == 0o700

    # status shows the program itself (no /bin/sh between), env files applied in order.
    procs = project.processes()
    web_pid = procs["web"]["pid"]
    assert _cmdline(web_pid)[:3] == ["python3", "-u", "serve.py"]
    worker_cmd = _cmdline(procs["worker"]["pid"])
    assert worker_cmd == ["sleep", "300"]  # the shell exec'd itself away

    logs = project.invoke("logs", "web")
    assert logs.returncode == 0, logs.stderr
    assert "web | serving from app.env from web.env env-wins" in logs.stdout
    assert "worker-up" not in logs.stdout
    as_json = [json.loads(line) for line in project.invoke("logs", "--json").stdout.splitlines()]
    texts = {(line["process"], line["text"]) for line in as_json}
    assert ("worker", "worker-up") in texts and all("time" in line for line in as_json)
    assert project.invoke("logs", "--since", "1h", "worker").stdout.count("worker-up") == 1
    bad = project.invoke("logs", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr
    unknown = project.invoke("logs", "nope")
    assert unknown.returncode == 1 and "no process 'nope'" in unknown.stderr

    # Follow, then restart from "another terminal": the follower sees the restart.
    follower = subprocess.Popen(
        [sys.executable, "-m", "invoke", "logs", "-f", "web", "--json"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())  # the history arrives first
        assert first["process"] == "web"
        restarted = project.invoke("restart", "web")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.startswith("web restarted (pid ")
        new_pid = int(restarted.stdout.split("pid ")[1].rstrip(")\n"))
        assert new_pid != web_pid and not pid_alive(web_pid)
        seen = []
        while not any("invoke restart" in text for text in seen):
            seen.append(json.loads(follower.stdout.readline())["text"])
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(20)

    # kill -9 of the real process: status keeps the exit after the restart.
    os.kill(new_pid, signal.SIGKILL)
    web = wait_until(
        lambda: (
            (p := project.processes()["web"])["pid"] not in (None, new_pid)
            and p["state"] == "ready"
            and p
        )
    )
    assert web["last_exit"] == -9 and "SIGKILL" in web["last_exit_text"]
    table = project.invoke("status").stdout
    assert "SIGKILL" in table.splitlines()[2]

    project.stop()
    assert not Path(record.control).exists()
    gone = project.invoke("restart", "web")
    assert gone.returncode == 1 and "no session is running" in gone.stderr


def test_restart_starts_a_process_that_had_ended(project: Project) -> None:
    (project.root / "caproni.yaml").write_text(
        CONFIG + "        once:\n          command: echo once-ran\n          restart: never\n"
    )
    project.start()
    wait_until(lambda: project.processes().get("once", {}).get("state") == "exited")
    assert project.invoke("restart", "once").returncode == 0
    wait_until(lambda: project.invoke("logs", "once").stdout.count("once-ran") == 2)


def test_status_wait_fails_with_a_reason(project: Project) -> None:
    none = project.invoke("status", "--wait", "ready", "--timeout", "0.3")
    assert none.returncode == 1
    assert "timed out after 0.3s: no session is running" in none.stderr
    (project.root / "caproni.yaml").write_text(
        "version: 2\nreloaders:\n  app:\n    type: process\n    process:\n      processes:\n"
        "        bad:\n          command: python3 -c 'raise SystemExit(4)'\n"
        "          max_restarts: 0\n        up:\n          command: sleep 300\n"
    )
    project.start()
    failed = project.invoke("status", "--wait", "ready", "--timeout", "50")
    assert failed.returncode == 1
    assert "not ready: bad failed (exit 4)" in failed.stderr


def test_exec_runs_with_tools_variables_and_env_files(project: Project) -> None:
    tools = project.root / ".tools" / "bin"
    tools.mkdir(parents=True)
    (tools / "pinned-tool").write_text('#!/bin/sh\necho pinned "$@"\n')
    (tools / "pinned-tool").chmod(0o755)
    (project.root / "invoke.yaml").write_text("caproni:\n  root: .tools\n")
    result = project.invoke(
        "exec", "--", "sh", "-c", 'pinned-tool "a b"; echo "$GREETING|$SHARED|$OWN"; exit 7'
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == ["pinned a b", "hi|from app.env|overridden"]
    own = project.invoke("exec", "--process", "web", "--", "sh", "-c", 'echo "$OWN"')
    assert own.stdout.strip() == "from web.env"
    missing = project.invoke("exec", "--", "no-such-program-xyz")
    assert missing.returncode == 127 and "command not found" in missing.stderr
    (project.root / "app.env").write_text("good=1\n'broken\n")
    broken = project.invoke("exec", "--", "true")
    assert broken.returncode == 1
    assert f"{project.root / 'app.env'}:2:1:" in broken.stderr


def test_validate_warns_about_globs_and_folded_items(project: Project) -> None:
    checkout = project.root / "repos" / "app"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "a.py").write_text("")
    (project.root / "caproni.yaml").write_text(
        "version: 2\nrepositories:\n  app: {directory: repos/app}\n"
        "reloaders:\n  app:\n    type: process\n    repository: app\n"
        "    process:\n      processes:\n"
        "        web:\n          command: python3 serve.py\n          watch:\n"
        "            - src/*.py\n             - tests/*.py\n"
        "        api:\n          command: python3 serve.py\n"
        "          watch: ['src/**/*.py', 'nothing/**']\n"
    )
    result = project.invoke("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "'src/*.py - tests/*.py' looks like several list items folded" in out
    assert "watch glob 'nothing/**' matches no file" in out
    assert "'src/**/*.py' matches" not in out


def test_env_file_errors_name_the_file_and_line(project: Project) -> None:
    (project.root / "web.env").write_text("OK=1\nexport =x\n")
    result = project.invoke("validate")
    assert result.returncode == 1
    assert f"{project.root / 'web.env'}:2:" in result.stdout + result.stderr


def test_var_by_name(project: Project) -> None:
    (project.root / "port.txt").write_text("8080\n")
    (project.root / "caproni.yaml").write_text(
        CONFIG + "runtimevars:\n  PORT: file://./port.txt?decoder=string\n"
    )
    result = project.invoke("var", "PORT")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8080"
    unknown = project.invoke("var", "NOPE")
    assert unknown.returncode == 2 and "runtimevars: PORT" in unknown.stderr


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("python3 -u app.py --port 8080", ["python3", "-u", "app.py", "--port", "8080"]),
        ("python -c 'print(1)'", ["python", "-c", "print(1)"]),
        ("node $APP", ["/bin/sh", "-c", "exec node $APP"]),
        ("app > out.log", ["/bin/sh", "-c", "exec app > out.log"]),
        ("a && b", ["/bin/sh", "-c", "a && b"]),
        ("echo up; exec sleep 1", ["/bin/sh", "-c", "echo up; exec sleep 1"]),
        ("FOO=1 app", ["/bin/sh", "-c", "FOO=1 app"]),
        ("cd src && app", ["/bin/sh", "-c", "cd src && app"]),
        ("app 'a;b' $X", ["/bin/sh", "-c", "exec app 'a;b' $X"]),
        ("app $(date)", ["/bin/sh", "-c", "app $(date)"]),
        ("trap '' TERM; app", ["/bin/sh", "-c", "trap '' TERM; app"]),
    ],
)
def test_command_argv(command: str, argv: list[str]) -> None:
    assert command_argv(command) == argv


def test_dotenv_format() -> None:
    text = (
        "# c\n\nexport A=1\nB = two words # note\nC='lit $X # not a comment'\n"
        'D="tab\\there \\"q\\""\nE=\nF=a#b\n'
    )
    assert parse_dotenv(text) == {
        "A": "1",
        "B": "two words",
        "C": "lit $X # not a comment",
        "D": 'tab\there "q"',
        "E": "",
        "F": "a#b",
    }
    for bad, line, column, words in [
        ("A=1\nnoequals\n", 2, 1, "expected KEY=VALUE"),
        ("1A=x\n", 1, 1, "is not a variable name"),
        ("A='open\n", 1, 3, "unclosed ' quote"),
        ('A="x" y\n', 1, 6, "after the closing quote"),
    ]:
        with pytest.raises(DotenvError) as caught:
            parse_dotenv(bad, "f.env")
        assert (caught.value.line, caught.value.column) == (line, column)
        assert words in caught.value.message


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        (
            "version: 2\nreloaders:\n  app:\n    type: process\n   process: {}\n",
            5,
            4,
            "indented less than the mapping it belongs to",
        ),
        (
            "version: 2\nreloaders:\n\tapp:\n    type: process\n",
            3,
            1,
            "a tab ('\\t') indents this line",
        ),
        ("version: 2\nreloaders:\n  app\n    type: process\n", 3, 6, "missing ':' after 'app'"),
        ('version: 2\nreloaders:\n  app:\n    type: "process\n', 4, 11, 'this " quote is never'),
        (
            "version: 2\nreloaders:\n  app:\n    type: process\n    process: {a: [x, y}\n",
            5,
            23,
            "the [ opened at line 5, column 18 is not closed here: close it with ]",
        ),
        (
            "version: 2\nreloaders:\n  app:\n    type: process\n    process: {a: [x, y\n",
            5,
            18,
            "this [ is never closed",
        ),
        ("version: 2\nreloaders:\n  - app\n", 3, 3, "expected a mapping; found a list"),
    ],
)
def test_yaml_structure_errors_in_our_words(
    tmp_path: Path, text: str, line: int, column: int, words: str
) -> None:
    from caproni_tasks.config import load_config

    path = tmp_path / "caproni.yaml"
    path.write_text(text)
    result = load_config(path)
    assert result.config is None
    (diagnostic,) = [d for d in result.diagnostics if d.severity == "error"]
    assert words in diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (line, column), diagnostic.message
