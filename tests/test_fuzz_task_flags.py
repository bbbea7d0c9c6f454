"""Fuzz probe: the tasks' flags with odd values, run in-process through invoke's
`Program` over `caproni_tasks.namespace()`.

Whatever the value (not a number, empty, NUL, a directory, a name too long, control
characters), a task ends with exit code 0, 1 or 2 and at most a one-line message on
stderr: never a Python exception (which the ``invoke`` command would print as a
traceback).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_mutations import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from invoke.program import Program

import caproni_tasks

SETTINGS = fuzz_settings(60)

ODD = [
    "",
    " ",
    "abc",
    "0",
    "-1",
    "1.5",
    "99999999999999999999999",
    "nan",
    "\x00",
    "a\x00b",
    "\x05",
    "a\nb",
    ".",
    "..",
    "/",
    "/nonexistent/dir/x",
    "missing.yaml",
    "caproni.yaml",
    "broken.yaml",
    "tools.ensure",
    "~",
    "a" * 300,
    "a/" * 2100,
    "%00",
    "file://./a%00b",
    "\u00e9\u200b\ufeff",
    "--",
]
values = st.one_of(st.sampled_from(ODD), st.text(max_size=12))

#: (task, flags that take a value, boolean flags that may be added). Only tasks that
#: end by themselves: ``run`` is left out (a valid config would start processes), and
#: the network is never reached (no repository URL is valid here).
TASKS: list[tuple[str, list[str], list[str]]] = [
    ("validate", ["--config", "--format"], []),
    ("lint", ["--file", "--format"], []),
    ("status", ["--config"], ["--json"]),
    ("schema", ["--output"], []),
    ("var", ["--url"], ["--json"]),
    ("ensure.install", ["--ensure-file", "--jobs", "--lock-timeout", "--paranoid"], ["--dry-run"]),
    ("ensure.resolve", ["--ensure-file"], []),
    ("ensure.verify", ["--ensure-file"], []),
    ("ensure.fmt", ["--file"], ["--check"]),
]


@st.composite
def invocations(draw: st.DrawFn) -> list[str]:
    task, flags, switches = draw(st.sampled_from(TASKS))
    argv = [task]
    for flag in draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3, unique=True)):
        argv += [f"{flag}={draw(values)}"]
    if switches:
        argv += draw(st.lists(st.sampled_from(switches), max_size=len(switches), unique=True))
    return argv


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "broken.yaml").write_bytes(b"version: 2\x05\n")
        (root / "caproni.yaml").write_text("version: 2\nreloaders: {}\n")
        (root / "tools.ensure").write_text("$ServiceURL file:///nonexistent/repo\na/b latest\n")
        yield root


def run_task(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=caproni_tasks.namespace(), version="fuzz").run(
                ["invoke", *argv], exit=True
            )
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return code, err.getvalue()


@SETTINGS
@given(invocations())
def test_odd_flag_values_never_raise(
    project: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    before = sorted(os.listdir(project))
    with monkeypatch.context() as patch:
        patch.chdir(project)
        code, err = run_task(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert len(err.strip().split("\n")) == 1, (argv, err)
    # Nothing is created by a refused flag (schema --output may write a file it names).
    if argv[0] != "schema":
        assert sorted(os.listdir(project)) == before, argv


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ensure.install", "--jobs=abc"], "--jobs 'abc': expected a whole number"),
        (["ensure.install", "--jobs=0"], "--jobs 0: must be at least 1"),
        (["ensure.install", "--lock-timeout=x"], "--lock-timeout 'x': expected a whole number"),
        (["validate", "--config=a\x00b"], "a path cannot contain a NUL character"),
        (["lint", "--file=\x00"], "a path cannot contain a NUL character"),
        (["ensure.fmt", "--file=\x00"], "a path cannot contain a NUL character"),
        (["schema", "--output=\x00"], "a path cannot contain a NUL character"),
        (["status", "--config=" + "a" * 5000], "path too long"),
        (["validate", "--config=" + "a" * 300], "a file name is too long"),
        (["validate", "--config=a\nb"], "control characters in a path"),
        (["schema", "--output=~no-such-user-here/x"], "--output ~no-such-user-here/x: "),
        (["var", "--url=a\nb"], "open variable 'a\\nb': missing scheme"),
    ],
)
def test_known_bad_flags_are_one_line_usage_errors(
    project: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(project)
    code, err = run_task(argv)
    assert code == 2, err
    assert message in err and len(err.strip().split("\n")) == 1
