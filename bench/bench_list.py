"""Whole-process ``invoke --list``: a tasks.py composing caproni_tasks vs one that doesn't.

Usage: python bench/bench_list.py [--runs N]   (goal: at most 25% slower)

Both projects live in temporary directories and are run alternately, so machine
noise hits both sides alike; the figure is the median over all runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PLAIN = '''\
from invoke import Collection, task


@task
def hello(c):
    """Say hello."""
    print("hello")


ns = Collection(hello)
'''

COMPOSED = '''\
from invoke import task

import caproni_tasks


@task
def hello(c):
    """Say hello."""
    print("hello")


ns = caproni_tasks.namespace()
ns.add_task(hello)
'''


def time_list(directory: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=directory,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp, "plain")
        composed = Path(tmp, "composed")
        for directory, source in ((plain, PLAIN), (composed, COMPOSED)):
            directory.mkdir()
            (directory / "tasks.py").write_text(source)
        for directory in (plain, composed):  # warm the OS caches and .pyc files
            time_list(directory, env)
        plain_times: list[float] = []
        composed_times: list[float] = []
        for _ in range(args.runs):
            plain_times.append(time_list(plain, env))
            composed_times.append(time_list(composed, env))
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "invoke", "--list"],
            cwd=composed,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stderr

    plain_ms = statistics.median(plain_times) * 1000
    composed_ms = statistics.median(composed_times) * 1000
    overhead = (composed_ms / plain_ms - 1) * 100
    print(f"runs: {args.runs} each, alternating (median)")
    print(f"invoke --list without caproni_tasks: {plain_ms:.1f} ms")
    print(f"invoke --list with caproni_tasks:    {composed_ms:.1f} ms")
    print(f"overhead: {overhead:+.1f}% (goal <= 25%)")
    ours = []
    for line in imports.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and "caproni_tasks" in parts[2]:
            ours.append((int(parts[1]), parts[2].rstrip()))
    print("heaviest caproni_tasks imports (cumulative us, from -X importtime):")
    for cumulative, name in sorted(ours, reverse=True)[:8]:
        print(f"  {cumulative:>8} {name}")
    imported = {line.split("|")[-1].strip() for line in imports.splitlines() if "|" in line}
    libraries = ("lark", "strictyaml", "watchfiles", "rich", "platformdirs")
    heavy = [m for m in libraries if m in imported]
    print(f"heavy libraries imported by --list: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
