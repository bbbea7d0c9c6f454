"""The random-kill probe: SIGKILL `ensure` at random moments, rerun, verify the whole root.

Each round picks the next target of a cycle (install, update, a directory turned into a
link, remove, re-add, downgrade), starts a real process that makes the root match it,
kills it after a random delay within the time a full run takes, then reruns to
completion and checks that the root holds exactly the target's files (content, modes
and links), that a CheckIntegrity plan is empty, and that nothing is left in the staging
area. The delay is the point of the probe (a random moment), not a wait for a condition.

``CAPRONI_TASKS_RANDOM_KILLS=400 python -m pytest tests/test_reliability_kills.py`` runs
the long version; ``CAPRONI_TASKS_RANDOM_SEED`` replays one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers_packages import File, FileSpec, Link, publish

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.installer import Desired, Installer

DRIVER = Path(__file__).with_name("ensure_driver.py")
KILLS = int(os.environ.get("CAPRONI_TASKS_RANDOM_KILLS", "30"))
SEED = int(os.environ.get("CAPRONI_TASKS_RANDOM_SEED", str(random.randrange(1 << 30))))


def _many(prefix: str, count: int, version: str) -> dict[str, FileSpec]:
    return {f"{prefix}/f{i:03}.txt": f"{prefix} {i} {version}\n" * 40 for i in range(count)}


VERSIONS: dict[str, dict[str, FileSpec]] = {
    "big@1": {**_many("share/big", 150, "v1"), "bin/big": File("#!/bin/sh\n", executable=True)},
    "big@2": {**_many("share/big", 120, "v2"), **_many("share/extra", 40, "v2")},
    "tool@1": {"bin/tool": File("tool v1", executable=True), "d/big": "not big's"},
    "tool@2": {"bin/tool": File("tool v2", executable=True), "d": Link("bin")},
    "small@1": _many("lib/small", 30, "v1"),
}

#: The cycle of targets: package -> version key.
TARGETS: list[dict[str, str]] = [
    {"t/big": "big@1", "t/tool": "tool@1", "t/small": "small@1"},
    {"t/big": "big@1", "t/tool": "tool@2", "t/small": "small@1"},  # d/ becomes d -> bin
    {"t/big": "big@2", "t/tool": "tool@2", "t/small": "small@1"},
    {"t/tool": "tool@2"},
    {"t/big": "big@2", "t/tool": "tool@2", "t/small": "small@1"},
    {"t/big": "big@1", "t/tool": "tool@1"},
    {},
]


def _expected(target: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for version in target.values():
        for name, spec in VERSIONS[version].items():
            if isinstance(spec, Link):
                out[name] = "-> " + spec.target
            else:
                data = spec.content if isinstance(spec, File) else spec
                text = data.decode() if isinstance(data, bytes) else data
                exe = isinstance(spec, File) and spec.executable
                out[name] = ("x " if exe else "") + text
    return out


def _actual(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".cipd"]
            filenames = [f for f in filenames if f != ".gitignore"]  # the installer's own
        for name in [*filenames, *(d for d in dirnames if os.path.islink(Path(dirpath, d)))]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            else:
                exe = bool(path.stat().st_mode & stat.S_IXUSR)
                out[rel] = ("x " if exe else "") + path.read_text()
    return out


@pytest.mark.timeout(max(120, KILLS * 4))
def test_random_kills_never_lose_or_leave_files(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    repo_dir = tmp_path / "repo"
    ids = {
        key: publish(repo_dir, f"t/{key.split('@')[0]}", files) for key, files in VERSIONS.items()
    }
    root, cache = tmp_path / "root", tmp_path / "cache"
    repo = LocalRepository(repo_dir)
    installer = Installer(root, InstanceCache(cache), lambda: repo)

    def desired(target: Mapping[str, str]) -> list[Desired]:
        return [Desired("", package, ids[version]) for package, version in target.items()]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1])])}

    def start(target: Mapping[str, str]) -> subprocess.Popen[bytes]:
        spec = json.dumps([[d.package, d.instance_id] for d in desired(target)])
        return subprocess.Popen(
            [sys.executable, str(DRIVER), str(root), str(cache), str(repo_dir), spec],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    # How long a whole run takes here, start-up included, so kills land anywhere in it.
    began = time.monotonic()
    first = start(TARGETS[0])
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    span = time.monotonic() - began
    previous = TARGETS[0]

    for round_number in range(KILLS):
        target = TARGETS[(round_number + 1) % len(TARGETS)]
        proc = start(target)
        time.sleep(rng.uniform(0.0, span))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        where = f"seed {SEED}, round {round_number}, from {previous} to {target}"
        installer.ensure(desired(target))
        assert _actual(root) == _expected(target), where
        assert installer.plan(desired(target), "CheckIntegrity").is_noop, where
        assert list((root / ".cipd/tmp").glob("*")) == [], where
        previous = target
