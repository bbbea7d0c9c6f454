"""Kernel watches placed for ``watch: ["**/*.py"]`` and ``["src/**/*.py"]`` in a project
whose ``node_modules`` holds N directories (default 5,000) beside a ``src`` tree of 50.

Counts the inotify watches this process holds (``/proc/self/fdinfo`` of its inotify
fds) once the session's watches are in place, and the time to place them.

    python bench/bench_watches.py [--node-modules 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from caproni_tasks.reloader.globs import PathMatcher
from caproni_tasks.reloader.watching import WatchHub

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_fswatch import kernel_watches


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--node-modules", type=int, default=5000)
    args = parser.parse_args()
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
