"""caproni.yaml with odd bytes: every input is diagnostics with file:line:col, never a
traceback (issue 11, item 7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from invoke.program import Program

import caproni_tasks
from caproni_tasks.config import load_config, load_text
from caproni_tasks.config.yamldoc import MAX_DEPTH
from caproni_tasks.diagnostics import Severity

VALID = (
    "version: 2\nreloaders:\n  web:\n    type: process\n    process:\n"
    "      processes:\n        a:\n          command: echo hi\n"
)


def only_error(text: str) -> tuple[int, int, str, str]:
    result = load_text(Path("caproni.yaml"), text)
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert result.config is None
    assert len(errors) == 1, errors
    d = errors[0]
    assert d.file == "caproni.yaml"
    assert "\n" not in d.message
    return d.line, d.column, d.code, d.message


def _laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("version: 2\x05\n", (1, 11), "control character U+0005"),
        ("version: 2\n\x00\n", (2, 1), "NUL byte"),
        ("version: 2\nx: a\x7fb\n", (2, 5), "U+007F"),
        ("version: 2\nx: \x9b\n", (2, 4), "U+009B"),
        ("version: 2\nx: \ud800\n", (2, 4), "surrogate"),
        ("version: 2\nx: \ufffe\n", (2, 4), "U+FFFE"),
        ("a: {}\n\nb: {}\n\nb: {}\n", (5, 1), "duplicate key 'b'"),
        ("a:\n\n  b: 1\n\n  b: 2\n", (5, 3), "duplicate key 'b'"),
        ("version:\t2\n\tx: 1\n", (1, 9), "'\\t'"),
        (_laughs(), (1, 4), "anchors and aliases"),
    ],
)
def test_odd_characters_and_structures_are_located(
    text: str, where: tuple[int, int], words: str
) -> None:
    line, column, _, message = only_error(text)
    assert (line, column) == where
    assert words in message


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000,
        "[\n" * 3000,
        "{a: " * 2000,
        "- " * 2000 + "x\n",
        "version: 2\nx: " + "[" * 300 + "]" * 300 + "\n",
        "".join(" " * i + f"k{i}:\n" for i in range(400)) + " " * 400 + "x: 1\n",
    ],
    ids=["flow-open", "flow-lines", "flow-maps", "block-seqs", "flow-closed", "block-maps"],
)
def test_deep_nesting_is_one_diagnostic_quickly(text: str) -> None:
    started = time.monotonic()
    line, column, code, message = only_error(text)
    assert time.monotonic() - started < 5
    assert code == "yaml-too-deep"
    assert f"more than {MAX_DEPTH} levels" in message
    assert line >= 1 and column >= 1


def test_nesting_within_the_limit_still_loads() -> None:
    deep = "{a: " * 20 + "1" + "}" * 20
    result = load_text(Path("caproni.yaml"), f"version: 2\nvariables:\n  X: 1\nextends: {deep}\n")
    assert not any(d.code == "yaml-too-deep" for d in result.diagnostics)


def test_a_byte_order_mark_is_not_content() -> None:
    result = load_text(Path("caproni.yaml"), "\ufeff" + VALID)
    assert result.ok, result.diagnostics


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "caproni.yaml"
    path.write_bytes(b"version: 2\nx: caf\xe9\n")
    result = load_config(path, cache=False)
    (d,) = result.diagnostics
    assert (d.line, d.column, d.code) == (2, 7, "unreadable")
    assert "not UTF-8" in d.message and "0xe9" in d.message


@pytest.mark.parametrize("task", ["validate", "lint"])
def test_tasks_report_a_control_character_without_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    task: str,
) -> None:
    (tmp_path / "caproni.yaml").write_bytes(b"version: 2\x05\n")
    monkeypatch.chdir(tmp_path)
    program = Program(namespace=caproni_tasks.namespace(), version="test")
    with pytest.raises(SystemExit) as info:
        program.run(["invoke", task], exit=True)
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "caproni.yaml:1:11: error: invalid YAML: control character U+0005" in out
