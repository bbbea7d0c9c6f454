"""``env_file:`` as one path or a list (in order, a later file wins, ``env:`` wins over
all) per reloader and per process, and ``invoke exec --process NAME`` running in exactly
the environment ``invoke run`` starts that process with — end to end: real files, real
`invoke run` and `invoke exec` subprocesses, conditions waited on with timeouts."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_processes import wait_until
from helpers_session import InvokeSession, make_project

pytestmark = [pytest.mark.timeout(120)]

CONFIG = """\
version: 2
variables:
  REGION: eu
runtimevars:
  PORT: file://./port.txt?decoder=string
reloaders:
  app:
    type: process
    env_file: [base.env, local.env]
    process:
      processes:
        web:
          command: python3 -u dump.py web.json
          env_file:
            - web.env
            - web.local.env
          env:
            LAYER: env
            FROM_ENV: env-${REGION}
            PORT: ${runtimevar:PORT}
          ready: {log: dumped}
  solo:
    type: process
    env_file: solo.env
    process:
      processes:
        only:
          command: python3 -u dump.py only.json
          env: {SOLO_ENV: "1"}
          ready: {log: dumped}
"""

#: Writes its environment as JSON to the file named first, says so, and stays up unless
#: told ``--once``.
DUMP_PY = textwrap.dedent(
    """
    import json, os, sys, time
    target = sys.argv[1]
    with open(target + ".tmp", "w") as out:
        json.dump(dict(os.environ), out)
    os.replace(target + ".tmp", target)
    print("dumped", flush=True)
    if "--once" not in sys.argv:
        time.sleep(300)
    """
)

FILES = {
    "dump.py": DUMP_PY,
    "port.txt": "8181",
    "base.env": "LAYER=base\nSHARED=base\nBASE_ONLY=b\n",
    "local.env": "export LAYER=local\nSHARED=local\nLOCAL_ONLY='l $x'\n",
    "web.env": 'LAYER=web\nSHARED="web"\nWEB=1\n',
    "web.local.env": "# the last file wins\nLAYER=web-local\nWEB=2\n",
    "solo.env": "SOLO=from-solo\n",
}


class Session(InvokeSession):
    def stop(self) -> None:
        """SIGTERM to `invoke run`: a clean stop."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def session(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Session]:
    root = make_project(tmp_path / "p", CONFIG, **FILES)
    handle = Session(root, dict(subprocess_env), check_status=False)
    try:
        yield handle
    finally:
        handle.stop()


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_run_applies_env_files_in_order_and_env_over_all(session: Session) -> None:
    session.start()
    env = wait_until(lambda: session.running() and _read_json(session.root / "web.json"), 60)
    assert env["LAYER"] == "env"  # env: wins over every file
    assert env["SHARED"] == "web"  # the process's files win over the reloader's
    assert env["WEB"] == "2"  # a later file of a list wins
    assert (env["BASE_ONLY"], env["LOCAL_ONLY"]) == ("b", "l $x")
    assert (env["FROM_ENV"], env["PORT"]) == ("env-eu", "8181")
    assert "REGION" not in env  # variables reach a process through ${NAME} only
    solo = wait_until(lambda: _read_json(session.root / "only.json"), 60)
    assert (solo["SOLO"], solo["SOLO_ENV"]) == ("from-solo", "1")


@pytest.mark.parametrize("name", ["web", "app.web"])
def test_exec_process_gets_exactly_what_run_gives(session: Session, name: str) -> None:
    session.start()
    started = wait_until(lambda: session.running() and _read_json(session.root / "web.json"), 60)
    result = session.invoke(
        "exec", "--process", name, "--", "python3", "dump.py", "x.json", "--once"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    executed = _read_json(session.root / "x.json")
    assert executed is not None
    # The session marker is the only difference: it finds what the session started.
    started.pop("CAPRONI_TASKS_SESSION")
    assert executed == started


def test_exec_reloader_with_one_process_is_that_process(session: Session) -> None:
    result = session.invoke(
        "exec", "--process", "solo", "--", "python3", "dump.py", "s.json", "--once"
    )
    assert result.returncode == 0, result.stderr
    env = _read_json(session.root / "s.json")
    assert env is not None
    assert (env["SOLO"], env["SOLO_ENV"]) == ("from-solo", "1")


def test_exec_without_process_reads_every_reloaders_files(session: Session) -> None:
    result = session.invoke(
        "exec", "--", "sh", "-c", 'echo "$REGION|$LAYER|$SHARED|$SOLO|${WEB-unset}"'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "eu|local|local|from-solo|unset"


def test_exec_names_a_process_it_cannot_find(session: Session) -> None:
    result = session.invoke("exec", "--process", "nope", "--", "true")
    assert result.returncode == 1
    assert "no process 'nope'" in result.stderr and "app.web" in result.stderr


def test_mistakes_name_file_line_and_column(session: Session) -> None:
    root = session.root
    (root / "web.local.env").write_text("OK=1\n  broken line\n")
    where = f"{root / 'web.local.env'}:2:3:"
    validate = session.invoke("validate")
    assert validate.returncode == 1 and where in validate.stdout + validate.stderr
    executed = session.invoke("exec", "--process", "web", "--", "true")
    assert executed.returncode == 1 and where in executed.stderr
    run = session.start()
    assert run.wait(60) != 0  # refuses to start anything
    assert where in session.output

    (root / "caproni.yaml").write_text(CONFIG.replace("[base.env, local.env]", "[base.env, '']"))
    schema = session.invoke("validate")
    assert schema.returncode == 1
    assert f"{root / 'caproni.yaml'}:9:26: error: expected a non-empty string" in schema.stdout
    (root / "caproni.yaml").write_text(CONFIG.replace("[base.env, local.env]", "{a: b}"))
    mapping = session.invoke("validate")
    assert "caproni.yaml:9:15: error: expected a string or a list of them" in mapping.stdout
