"""External tools of the cluster kinds (skaffold, kubectl, mirrord): found on PATH,
whose first entry is the ensure root's ``bin/`` when ``invoke run``/``status``/
``validate`` put it there; a missing one is explained, with how to pin it.

The one place the kinds (and kubectl.py) look tools up."""

from __future__ import annotations

import shutil

__all__ = ["ToolMissingError", "find_tool", "missing_tool_message", "require_tool"]


class ToolMissingError(Exception):
    """A tool is not installed; the message says how to pin it."""


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


def require_tool(name: str) -> str:
    """The path of ``name``; `ToolMissingError` (with `missing_tool_message`) if absent."""
    found = find_tool(name)
    if found is None:
        raise ToolMissingError(missing_tool_message(name))
    return found
