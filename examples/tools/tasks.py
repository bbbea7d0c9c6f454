"""caproni-tasks in one line, plus ``publish``: build this example's package repository.

``invoke publish`` turns every directory under ``packages/`` into a package and
registers it in ``.repo/`` (the ``caproni.service_url`` setting in ``invoke.yaml``)
with ``pkg.create``. Building is deterministic, so running it again changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

import caproni_tasks
from caproni_tasks.tasks.pkg import create

HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "packages"

#: package name -> (source directory under packages/, version tag)
RELEASES = {
    "tools/hello": ("hello", "version:1.0"),
    "tools/docs": ("docs", "version:1.0"),
    **{
        f"tools/greeter/{platform}": (f"greeter/{platform}", "version:2.1")
        for platform in ("linux-amd64", "linux-arm64", "mac-amd64", "mac-arm64")
    },
    **{
        f"tools/sandbox/{platform}": (f"sandbox/{platform}", "version:0.3")
        for platform in ("linux-amd64", "linux-arm64")
    },
}


@task()
def publish(c: Context) -> None:
    """Build every package under packages/ into the local repository .repo/ (re-runnable)."""
    for name, (source, tag) in RELEASES.items():
        create(c, in_=str(PACKAGES / source), name=name, ref=["latest"], tag=[tag])


ns = caproni_tasks.namespace()
ns.add_task(publish)
