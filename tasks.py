"""The project's own tasks (test, lint, bench), composed with caproni_tasks as a user would.

caproni's tasks live under the ``dev`` prefix here (``invoke dev.lint``, ``invoke
dev.ensure.fmt``) because this project's own ``lint`` runs ruff and mypy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

import caproni_tasks

PY = sys.executable
HERE = Path(__file__).resolve().parent


@task(help={"args": "Extra pytest arguments, e.g. '-k ensure -x'."})
def test(c: Context, args: str = "") -> None:
    """Run the test suite."""
    with c.cd(str(HERE)):
        c.run(f"{PY} -m pytest {args}")


@task
def lint(c: Context) -> None:
    """ruff (lint + format check) and mypy --strict on the package."""
    with c.cd(str(HERE)):
        c.run(f"{PY} -m ruff check caproni_tasks tests bench tasks.py")
        c.run(f"{PY} -m ruff format --check caproni_tasks tests bench tasks.py")
        c.run(f"{PY} -m mypy")


@task(help={"name": "Run one benchmark (e.g. 'parse' for bench/bench_parse.py); default all."})
def bench(c: Context, name: str = "") -> None:
    """Run the benchmarks in bench/; figures are recorded in bench/README.md."""
    for script in sorted((HERE / "bench").glob("bench_*.py")):
        if not name or script.stem in (name, f"bench_{name}"):
            c.run(f"{PY} {script}")


ns = Collection(test, lint, bench)
ns.add_collection(caproni_tasks.namespace(), "dev")
