"""The project's own tasks, composed with caproni_tasks exactly as a user would."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

import caproni_tasks

PY = sys.executable

ns = caproni_tasks.namespace()


@task(help={"args": "Extra pytest arguments, e.g. '-k ensure -x'."})
def test(c: Context, args: str = "") -> None:
    """Run the test suite."""
    c.run(f"{PY} -m pytest {args}", pty=False)


@task(name="check")
def check(c: Context) -> None:
    """ruff (lint + format check) and mypy --strict on the package."""
    c.run(f"{PY} -m ruff check caproni_tasks tests bench tasks.py")
    c.run(f"{PY} -m ruff format --check caproni_tasks tests bench tasks.py")
    c.run(f"{PY} -m mypy")


@task(help={"name": "Run one benchmark script (file name without .py); default all."})
def bench(c: Context, name: str = "") -> None:
    """Run the benchmarks in bench/ (figures go to bench/README.md by hand)."""
    import pathlib

    scripts = sorted(pathlib.Path("bench").glob("bench_*.py"))
    for script in scripts:
        if not name or script.stem in (name, f"bench_{name}"):
            c.run(f"{PY} {script}")


ns.add_task(test)
ns.add_task(check)
ns.add_task(bench)
