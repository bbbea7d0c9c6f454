"""The ensure-file language: parse → `EnsureFile` → resolve → `ResolvedFile` → serialize.

Pure: text in, values out. Importing this package is cheap; lark is imported only
when a file is parsed.
"""

from __future__ import annotations

from caproni_tasks.ensure.errors import (
    EnsureFileError,
    EnsureParseError,
    MultiError,
    ResolveError,
    ValidationError,
)
from caproni_tasks.ensure.quoting import go_quote
from caproni_tasks.ensure.validation import (
    InvalidInstanceID,
    InvalidPackageName,
    InvalidRef,
    InvalidSubdir,
    InvalidTag,
    InvalidVersion,
    Pin,
    instance_id_from_sha256,
    is_instance_id,
    validate_instance_id,
    validate_package_name,
    validate_ref,
    validate_subdir,
    validate_tag,
    validate_version,
    version_kind,
)

__all__ = [
    "EnsureFileError",
    "EnsureParseError",
    "InvalidInstanceID",
    "InvalidPackageName",
    "InvalidRef",
    "InvalidSubdir",
    "InvalidTag",
    "InvalidVersion",
    "MultiError",
    "Pin",
    "ResolveError",
    "ValidationError",
    "go_quote",
    "instance_id_from_sha256",
    "is_instance_id",
    "validate_instance_id",
    "validate_package_name",
    "validate_ref",
    "validate_subdir",
    "validate_tag",
    "validate_version",
    "version_kind",
]
