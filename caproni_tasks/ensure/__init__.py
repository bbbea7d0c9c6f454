"""The ensure-file language: parse → `EnsureFile` → resolve → `ResolvedFile` → serialize.

Pure: text in, values out. Importing this package is cheap; lark is imported only
when a file is parsed.
"""

from __future__ import annotations

from caproni_tasks.ensure.commented import format_keeping_comments
from caproni_tasks.ensure.errors import (
    EnsureFileError,
    EnsureParseError,
    MultiError,
    PlatformError,
    ResolveError,
    ValidationError,
)
from caproni_tasks.ensure.model import PARANOID_MODES, EnsureFile, PackageDef, ResolvedFile
from caproni_tasks.ensure.parser import parse, split_statement
from caproni_tasks.ensure.quoting import go_quote
from caproni_tasks.ensure.resolve import (
    Resolver,
    collect_problems,
    resolve_for_platforms,
    verified_platforms,
)
from caproni_tasks.ensure.template import (
    TemplateError,
    TemplateSkipped,
    expand_template,
    host_template_args,
    platform_template_args,
)
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
    validate_service_url,
    validate_subdir,
    validate_tag,
    validate_version,
    version_kind,
)
from caproni_tasks.ensure.versions_file import (
    VersionsFile,
    VersionsFileError,
    parse_versions_file,
)

__all__ = [
    "PARANOID_MODES",
    "EnsureFile",
    "EnsureFileError",
    "EnsureParseError",
    "InvalidInstanceID",
    "InvalidPackageName",
    "InvalidRef",
    "InvalidSubdir",
    "InvalidTag",
    "InvalidVersion",
    "MultiError",
    "PackageDef",
    "Pin",
    "PlatformError",
    "ResolveError",
    "ResolvedFile",
    "Resolver",
    "TemplateError",
    "TemplateSkipped",
    "ValidationError",
    "VersionsFile",
    "VersionsFileError",
    "collect_problems",
    "expand_template",
    "format_keeping_comments",
    "go_quote",
    "host_template_args",
    "instance_id_from_sha256",
    "is_instance_id",
    "parse",
    "parse_versions_file",
    "platform_template_args",
    "resolve_for_platforms",
    "split_statement",
    "validate_instance_id",
    "validate_package_name",
    "validate_ref",
    "validate_service_url",
    "validate_subdir",
    "validate_tag",
    "validate_version",
    "verified_platforms",
    "version_kind",
]
