"""caproni-tasks: invoke tasks for a declarative local-development loop.

Compose into a project's ``tasks.py`` in one line::

    import caproni_tasks
    ns = caproni_tasks.namespace()                          # all tasks at the top level
    # or: ns.add_collection(caproni_tasks.namespace(), "dev")  # under a prefix
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invoke.collection import Collection

__version__ = "0.1.0"
__all__ = ["__version__", "namespace"]


def namespace() -> Collection:
    """A fresh invoke `Collection` with every caproni task (safe to mutate)."""
    from caproni_tasks.tasks import build_namespace

    return build_namespace()
