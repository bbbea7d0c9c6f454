"""External tools of the cluster kinds (skaffold, kubectl, mirrord): found on PATH,
whose first entry is the ensure root's ``bin/`` when ``invoke run``/``status``/
``validate`` put it there; a missing one is explained, with how to pin it."""

from __future__ import annotations

import shutil

__all__ = ["find_tool", "missing_tool_message"]


def find_tool(name: str, path: str | None = None) -> str | None:
    """The absolute path of the executable ``name`` on ``path`` (default: PATH)."""
    return shutil.which(name, path=path)


def missing_tool_message(name: str) -> str:
    """Why ``name`` cannot run, and the two ways to fix it."""
    return (
        f"{name} not found on PATH (the ensure root's bin/ is searched first): install it, "
        f"or pin a package that provides bin/{name} in the ensure file (tools.ensure) and "
        "run `invoke ensure`"
    )
