"""Reloaders: the kinds that run a service's development processes with hot reload.

The contract (`Manager`, `State`, `Status`, the errors), the kind registry (`Kind`,
`register_kind`, `register`, `list_types`, `new_manager`) and the supervisor's narrow
face (`ProcessDescription`, `ProcessHost`) are the public face. Built-in kinds
(``caproni_tasks.reloader.kinds``) are imported when first asked for, third-party kinds
come through the ``caproni_tasks.reloaders`` entry-point group.
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
from caproni_tasks.reloader.description import ProcessDescription, ProcessHost
from caproni_tasks.reloader.registry import (
    ENTRY_POINT_GROUP,
    Kind,
    list_types,
    new_manager,
    register,
    register_kind,
)
from caproni_tasks.reloader.validation import validate_reloaders

__all__ = [
    "ENTRY_POINT_GROUP",
    "Kind",
    "Manager",
    "ProcessDescription",
    "ProcessHost",
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
    "register_kind",
    "validate_reloaders",
]
