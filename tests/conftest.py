"""Shared fixtures: every test gets private cache/state/config directories."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point platformdirs (XDG) at fresh directories so tests never touch the user's."""
    base = tmp_path_factory.mktemp("xdg")
    for name in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        path = base / name.lower()
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("INVOKE_RUNTIME_CONFIG", raising=False)
    yield base


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes (invoke, python) that import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@pytest.fixture
def invoke_cmd() -> list[str]:
    """The invoke command line run with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "invoke"]


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """Where a test's local package repository lives (created by the first publish)."""
    return tmp_path / "repo"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A tools root for installer tests."""
    return tmp_path / "root"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory shared by one module's examples (hypothesis runs many per test)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)
