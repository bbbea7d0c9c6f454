"""Kernel watches placed for ``watch: ["**/*.py"]`` and ``["src/**/*.py"]`` in a project
whose ``node_modules`` holds N directories (default 5,000) beside a ``src`` tree of 50.

Counts the inotify watches this process holds (``/proc/self/fdinfo`` of its inotify
fds) once the session's watches are in place, and the time to place them.

    python bench/bench_watches.py [--node-modules 5000]

``--idle N`` instead measures the CPU (all threads of this process, watchfiles' Rust
threads included) of a watch of N directories (10 files each) while nothing changes,
for each backend in ``--backends`` (default: notify and poll, the choice on macOS):

    python bench/bench_watches.py --idle 50 [--seconds 10] [--backends notify,poll]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from caproni_tasks.fswatch import BACKEND_ENV
from caproni_tasks.reloader.globs import PathMatcher
from caproni_tasks.reloader.watching import WatchHub

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers_watch import kernel_watches


async def measure(root: Path, pattern: str) -> tuple[int, int, float]:
    hub = WatchHub()
    started = time.perf_counter()
    hub.add(PathMatcher(root, [pattern]), lambda paths: None)
    await hub.wait_started(60)
    elapsed = time.perf_counter() - started
    try:
        return len(hub.directories), kernel_watches(), elapsed
    finally:
        await hub.close()


async def idle_cpu(root: Path, seconds: float) -> tuple[int, float]:
    """Directories watched and the CPU share of one core used while nothing changes."""
    hub = WatchHub()
    hub.add(PathMatcher(root, ["**/*.py"]), lambda paths: None)
    await hub.wait_started(60)
    try:
        await asyncio.sleep(1.0)  # settled: threads started, first polls done
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return len(hub.directories), (time.process_time() - cpu) / (time.monotonic() - wall)
    finally:
        await hub.close()


def main_idle(directories: int, seconds: float, backends: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-watches-idle-") as tmp:
        root = Path(tmp)
        for i in range(directories - 1):  # the root is watched too
            sub = root / f"d{i}"
            sub.mkdir()
            for f in range(10):
                (sub / f"f{f}.py").write_text("x = 1\n")
        print(f"idle watch of {directories} directories for {seconds:g} s, {os.cpu_count()} cores")
        for name in backends:
            os.environ[BACKEND_ENV] = name
            watched, share = asyncio.run(idle_cpu(root, seconds))
            print(f"  {name:8} {watched} directories: {share * 100:.2f}% of a core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--node-modules", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=0, metavar="N")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="notify,poll")
    args = parser.parse_args()
    if args.idle:
        main_idle(args.idle, args.seconds, args.backends.split(","))
        return
    with tempfile.TemporaryDirectory(prefix="bench-watches-") as tmp:
        root = Path(tmp)
        for i in range(args.node_modules // 2):
            (root / "node_modules" / f"p{i}" / "lib").mkdir(parents=True)
        for i in range(25):
            (root / "src" / f"m{i}" / "sub").mkdir(parents=True)
        print(f"node_modules: {args.node_modules} directories; src: 50 directories")
        for pattern in ("**/*.py", "src/**/*.py"):
            dirs, watches, elapsed = asyncio.run(measure(root, pattern))
            print(
                f"watch {pattern!r}: {dirs} directories watched, {watches} kernel watches, "
                f"in place after {elapsed * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
