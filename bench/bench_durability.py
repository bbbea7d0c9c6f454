"""What a durable commit costs: the 100 MiB / 2,000-file install, three ways, side by side.

In one process (no ``invoke`` start-up, so the share of the fsyncs is as large as it
can be), warm cache, rounds interleaved in random order, each after ``sync`` and a pause:

- none: no fsync at all (state records and directory entries left to the kernel);
- default: what `invoke ensure` does (records and the directory entries of renames);
- durable_data: also one filesystem flush of the installed contents before the commit.

Usage::

    python bench/bench_durability.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_install import make_tree  # noqa: E402

import caproni_tasks.packages.execution as execution  # noqa: E402
import caproni_tasks.packages.state as state  # noqa: E402
from caproni_tasks.packages.backends.directory import LocalRepository  # noqa: E402
from caproni_tasks.packages.cache import InstanceCache  # noqa: E402
from caproni_tasks.packages.format import build_package  # noqa: E402
from caproni_tasks.packages.installer import Desired, Installer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    try:
        run(work, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _no_fsync(directory: Path) -> None:
    """The "none" variant's stand-in for `fsync_directory`."""


def run(work: Path, rounds: int) -> None:
    make_tree(work / "src", 100 << 20, 2000)
    build_package(work / "src", "bench/big", work / "big.cipd")
    shutil.rmtree(work / "src")
    repo = LocalRepository(work / "repo")
    iid = repo.register_instance(work / "big.cipd")
    cache = InstanceCache(work / "cache")
    want = [Desired("", "bench/big", iid)]
    Installer(work / "warm", cache, lambda: repo).ensure(want)  # fills the cache
    durable_dirs, durable_write = execution.fsync_directory, state.write_atomic

    def nondurable_write(path: Path, data: Any, **options: Any) -> None:
        durable_write(path, data, **{**options, "durable": False})

    variants = {
        "none (no fsync at all)": (_no_fsync, nondurable_write, False),
        "default (records + dir entries)": (durable_dirs, durable_write, False),
        "durable_data (+ syncfs)": (durable_dirs, durable_write, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            dirs, write, data = variants[name]
            execution.fsync_directory = dirs  # type: ignore[assignment]
            state.write_atomic = write  # type: ignore[assignment]
            root = work / "root"
            shutil.rmtree(root, ignore_errors=True)
            os.sync()  # nobody pays for the previous round's writeback
            time.sleep(1)
            started = time.perf_counter()
            Installer(root, cache, lambda: repo, durable_data=data).ensure(want)
            times[name].append(time.perf_counter() - started)
    base = times["none (no fsync at all)"]
    print(f"100 MiB / 2,000 files, warm cache, {rounds} interleaved rounds")
    for name, values in times.items():
        ratio = statistics.median([a / b for a, b in zip(values, base, strict=True)])
        print(f"{name:34} median {statistics.median(values):.3f} s  vs none {ratio:.3f}")


if __name__ == "__main__":
    main()
