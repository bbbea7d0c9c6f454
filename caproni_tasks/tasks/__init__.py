"""The invoke face of caproni-tasks: thin tasks over the library.

Each module here holds the tasks of one area; `build_namespace` gathers every
`invoke.Task` they define, so adding a task is adding a function with ``@task``.
Task modules import nothing heavy at module level: ``invoke --list`` must stay fast.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from invoke.collection import Collection
from invoke.tasks import Task

from caproni_tasks.tasks import (
    control,
    ensure_fmt,
    ensure_install,
    exec_env,
    lint,
    pkg,
    schema,
    serve,
    session,
    var,
)
from caproni_tasks.tasks._common import DEFAULTS

#: Modules whose tasks live at the top level of the namespace.
TOP_LEVEL: tuple[ModuleType, ...] = (session, control, exec_env, lint, schema, var)
#: Sub-collections: name -> modules whose tasks it gathers.
SUB_COLLECTIONS: dict[str, tuple[ModuleType, ...]] = {
    "ensure": (ensure_install, ensure_fmt),
    "pkg": (pkg, serve),
}


def _tasks_of(module: ModuleType) -> list[Task[Any]]:
    return [value for value in vars(module).values() if isinstance(value, Task)]


def build_namespace() -> Collection:
    # Copies that know where they sit, so hints and docstrings name the command the
    # user types (``invoke dev.ensure.resolve``, ``caproni-tasks ensure.resolve``).
    from caproni_tasks.tasks._commands import hinted

    ns = Collection()
    for module in TOP_LEVEL:
        for task in _tasks_of(module):
            ns.add_task(hinted(task, ""))
    for name, modules in SUB_COLLECTIONS.items():
        sub = Collection(name)
        for module in modules:
            for task in _tasks_of(module):
                sub.add_task(hinted(task, name))
        ns.add_collection(sub)
    # Declaring every key lets invoke map INVOKE_CAPRONI_* environment variables onto
    # them (it only loads env vars for keys it knows). Tasks still read through
    # `setting()` with fallbacks, since an outer collection's `caproni:` block replaces
    # this one wholesale.
    ns.configure({"caproni": dict(DEFAULTS)})
    return ns
