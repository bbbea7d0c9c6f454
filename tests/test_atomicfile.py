"""The one durable replace-by-rename helper every writer uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from caproni_tasks.atomicfile import atomic_output, flush_filesystem, write_atomic


def test_replaces_whole_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(target, "new", mode=0o640)
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["state.json"], "no temporary file left"


def test_a_failure_midway_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as out:
        out.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["index.json"]


def test_a_missing_directory_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no/such/file", b"x")
    assert not (tmp_path / "no").exists()


def test_flush_filesystem_returns(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    flush_filesystem(tmp_path)
