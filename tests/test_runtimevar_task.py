"""``invoke var``: through invoke's Program, and ``--follow`` as a real process stopped
with SIGINT."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from helpers_session import make_project
from invoke.program import Program

import caproni_tasks

LONG = 30.0


def run_var(argv: list[str]) -> int:
    """Run ``invoke var ...`` in-process; the exit code (0 when it returns normally)."""
    program = Program(namespace=caproni_tasks.namespace(), version="test")
    try:
        program.run(["invoke", "var", *argv], exit=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_prints_jsonmap_as_json(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "flags.json").write_text('{"dark": true, "n": [1, 2]}')
    assert run_var(["file://./flags.json?decoder=jsonmap"]) == 0
    assert json.loads(capsys.readouterr().out) == {"dark": True, "n": [1, 2]}


def test_prints_string_as_text(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "v.txt").write_text("plain text\n")
    assert run_var(["file://./v.txt?decoder=string"]) == 0
    assert capsys.readouterr().out == "plain text\n"


def test_bytes_as_text_or_base64(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "utf8").write_bytes(b"hello")
    (cwd / "binary").write_bytes(b"\xff\x00\x01")
    assert run_var([f"file://{cwd}/utf8"]) == 0
    assert capsys.readouterr().out == "hello\n"
    assert run_var(["file://./binary"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "/wAB\n"
    assert "base64" in captured.err


def test_json_output(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "binary").write_bytes(b"\xff")
    (cwd / "m.json").write_text('{"a": 1}')
    assert run_var(["file://./m.json?decoder=json", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["value"] == {"a": 1} and record["update_time"].endswith("+00:00")
    assert run_var(["file://./binary", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["value"], record["encoding"]) == ("/w==", "base64")


def test_missing_file_is_exit_1_with_the_error(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_var(["file://./nope.txt"]) == 1
    err = capsys.readouterr().err
    assert "NOT_FOUND" in err and "nope.txt" in err and "Traceback" not in err
    assert run_var(["file://./nope.txt", "--json"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("conf.json", "missing scheme"),
        ("file://./x?decoder=yaml", 'unsupported decoder "yaml"'),
        ("file://./x?colour=red", 'invalid query parameter "colour"'),
        ("ftp://host/x", 'no opener for scheme "ftp"'),
    ],
)
def test_bad_url_is_exit_2(
    cwd: Path, capsys: pytest.CaptureFixture[str], url: str, words: str
) -> None:
    assert run_var([url]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


# -- --follow as a real process -------------------------------------------------------

#: Start invoke with SIGINT handled the way an interactive shell leaves it (a child of a
#: background job would otherwise inherit "ignore SIGINT").
LAUNCH = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'invoke'; from invoke.main import program; program.run()"
)


class Lines:
    """Lines of a child's stream, read by a thread, waited for with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def next(self) -> str:
        line = self._queue.get(timeout=LONG)
        self.seen.append(line)
        return line

    def rest(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self._queue.get(timeout=1.0))
            except queue.Empty:
                return out


def write_atomic(path: Path, text: str) -> None:
    """Replace *path* in one step, so the follower never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_project(tmp_path)
    return tmp_path


def start_follow(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "var", *args, "--follow"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
            child.wait(LONG)


def stop_with_sigint(child: subprocess.Popen[str]) -> int:
    child.send_signal(signal.SIGINT)
    return child.wait(LONG)


def test_follow_prints_changes_and_errors_until_sigint(
    project: Path, subprocess_env: dict[str, str], children: list[Any]
) -> None:
    path = project / "flags.json"
    child = start_follow(project, subprocess_env, "file://./flags.json?decoder=jsonmap")
    children.append(child)
    out, err = Lines(child.stdout), Lines(child.stderr)  # type: ignore[arg-type]

    assert "error NOT_FOUND" in err.next()  # missing at start: reported, still running
    write_atomic(path, '{"v": 1}')
    assert out.next().startswith("# 20")  # the change's time
    assert json.loads("".join(out.next() for _ in range(3))) == {"v": 1}
    write_atomic(path, "{broken")
    assert "error UNKNOWN" in err.next()
    write_atomic(path, '{"v": 2}')
    assert out.next().startswith("# 20")
    assert json.loads("".join(out.next() for _ in range(3))) == {"v": 2}

    assert stop_with_sigint(child) == 0
    leftovers = "\n".join(err.rest())
    assert "Traceback" not in leftovers and "KeyboardInterrupt" not in leftovers


def test_follow_json_lines(
    project: Path, subprocess_env: dict[str, str], children: list[Any]
) -> None:
    path = project / "v.txt"
    path.write_text("one")
    child = start_follow(project, subprocess_env, "file://./v.txt?decoder=string", "--json")
    children.append(child)
    out, err = Lines(child.stdout), Lines(child.stderr)  # type: ignore[arg-type]
    assert json.loads(out.next())["value"] == "one"
    path.unlink()
    record = json.loads(err.next())
    assert record["error"]["code"] == "NOT_FOUND"
    write_atomic(path, "two")
    assert json.loads(out.next())["value"] == "two"
    assert stop_with_sigint(child) == 0
    assert not any("Traceback" in line for line in err.rest())
