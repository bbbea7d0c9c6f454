"""Runtime variables: latency from a file change to ``watch()`` returning the new value.

Three situations, each over N changes (default 60): an in-place write, an atomic
replace (write a temp file, rename over), and re-creation after a delete (the case
the Go original only sees after its 30 s poll). Also the idle cost: CPU used by the
process while variables sit unchanged.

    python bench/bench_runtimevar.py [--changes 60] [--idle-seconds 10]

Changes are noticed by the package's watching layer (inotify, event-driven: no step);
a write still in progress waits for its close, at most ``watcher.SETTLE_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caproni_tasks.runtimevar import JSONMAP, Variable, VariableError, open_file_variable
from caproni_tasks.runtimevar import watcher as watcher_module

TIMEOUT = 10.0


def wait_for_value(var: Variable[Any], expected: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if var.watch(timeout=max(0.0, deadline - time.monotonic())).value == expected:
                return
        except VariableError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"value never observed: {exc}") from exc


def wait_for_error(var: Variable[Any]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            var.watch(timeout=max(0.0, deadline - time.monotonic()))
        except VariableError as exc:
            if exc.code.name == "DEADLINE_EXCEEDED":
                raise
            return


def in_place(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def measure(
    directory: Path, changes: int, write: Callable[[Path, bytes], None], recreate: bool
) -> list[float]:
    path = directory / f"bench-{write.__name__}-{recreate}.json"
    path.write_bytes(b'{"n": -1}')
    latencies = []
    with open_file_variable(path, JSONMAP) as var:
        wait_for_value(var, {"n": -1})
        for n in range(changes):
            if recreate:
                path.unlink()
                wait_for_error(var)
            time.sleep(random.uniform(0, 0.03))  # land at random points of the batch step
            start = time.perf_counter()
            write(path, json.dumps({"n": n}).encode())
            wait_for_value(var, {"n": n})
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def measure_async(directory: Path, changes: int) -> list[float]:
    path = directory / "bench-async.json"
    path.write_bytes(b'{"n": -1}')
    var = open_file_variable(path, JSONMAP)

    async def run() -> list[float]:
        latencies = []
        it = var.changes_async(errors="skip")
        assert (await anext(it)).value == {"n": -1}
        for n in range(changes):
            await asyncio.sleep(random.uniform(0, 0.03))
            start = time.perf_counter()
            atomic(path, json.dumps({"n": n}).encode())
            while (await asyncio.wait_for(anext(it), TIMEOUT)).value != {"n": n}:
                pass
            latencies.append((time.perf_counter() - start) * 1000)
        return latencies

    try:
        return asyncio.run(run())
    finally:
        var.close()


def idle_cpu(directory: Path, variables: int, directories: int, seconds: float) -> float:
    """CPU percent of one core used by this process while *variables*, spread over
    *directories* directories, sit unchanged."""
    folders = [directory / f"idle-{variables}-{directories}-{i}" for i in range(directories)]
    for folder in folders:
        folder.mkdir()
    paths = [folders[i % directories] / f"idle-{i}.json" for i in range(variables)]
    for p in paths:
        p.write_bytes(b"{}")
    opened = [open_file_variable(p, JSONMAP) for p in paths]
    try:
        for var in opened:
            var.latest(timeout=TIMEOUT)
        time.sleep(0.5)  # let the watcher settle after the last open
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        time.sleep(seconds)
        after, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    finally:
        for var in opened:
            var.close()
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100 * used / (t1 - t0)


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.1f} | {p95:.1f} "
        f"| {values[-1]:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--idle-only", action="store_true", help="skip the latency runs")
    args = parser.parse_args()
    random.seed(4)
    with tempfile.TemporaryDirectory(prefix="bench-runtimevar-") as tmp:
        directory = Path(tmp)
        rows = []
        if not args.idle_only:
            rows = [
                summary("in-place write", measure(directory, args.changes, in_place, False)),
                summary("atomic replace (rename)", measure(directory, args.changes, atomic, False)),
                summary("re-create after delete", measure(directory, args.changes, atomic, True)),
                summary(
                    "atomic replace, async changes_async", measure_async(directory, args.changes)
                ),
            ]
        idle = {
            (v, d): idle_cpu(directory, v, d, args.idle_seconds)
            for v, d in ((1, 1), (50, 1), (20, 20))
        }
    print(f"watching layer: inotify, settle {watcher_module.SETTLE_S * 1000:g} ms")
    print(
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}"
    )
    if rows:
        print()
        print("| change → watch() returns the new value | changes | p50 ms | p95 ms | max ms |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(row)
    print()
    print(f"idle CPU over {args.idle_seconds:g} s (% of one core):")
    for (variables, directories), percent in idle.items():
        print(f"  {variables} variable(s) in {directories} directory(ies): {percent:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
