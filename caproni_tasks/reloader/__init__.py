"""Reloaders: the kinds that run a service's development processes with hot reload.

The contract (`Manager`, `State`, `Status`, the errors) and the registry
(`register`, `list_types`, `new_manager`) are the public face; built-in kinds register
themselves when this package is imported, third-party kinds through the
``caproni_tasks.reloaders`` entry-point group.
"""

from __future__ import annotations

from caproni_tasks.reloader.contract import (
    Manager,
    ReloaderError,
    RunFailedError,
    State,
    Status,
    StatusFailedError,
    TargetNotFoundError,
    UnknownTypeError,
)
from caproni_tasks.reloader.registry import (
    ENTRY_POINT_GROUP,
    list_types,
    new_manager,
    register,
)
from caproni_tasks.reloader.validation import validate_reloaders

__all__ = [
    "ENTRY_POINT_GROUP",
    "Manager",
    "ReloaderError",
    "RunFailedError",
    "State",
    "Status",
    "StatusFailedError",
    "TargetNotFoundError",
    "UnknownTypeError",
    "list_types",
    "new_manager",
    "register",
    "validate_reloaders",
]

# Built-in kinds register on import.
from caproni_tasks.reloader import process as _process  # noqa: F401
