"""Resolving an `EnsureFile` for a platform: expand templates, check, pin, de-duplicate.

Order and wording follow the original client: subdirs in byte order, lines in file
order; the first expansion or validation problem is raised alone; lookup failures
and duplicates are gathered into one error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from caproni_tasks.ensure.errors import (
    EnsureFileError,
    PlatformError,
    ResolveError,
    ValidationError,
    combine_errors,
)
from caproni_tasks.ensure.model import NOT_PARANOID, EnsureFile, ResolvedFile
from caproni_tasks.ensure.quoting import go_quote
from caproni_tasks.ensure.template import (
    TemplateError,
    TemplateSkipped,
    expand_template,
    host_arch,
    host_os,
    host_template_args,
    platform_template_args,
)
from caproni_tasks.ensure.validation import (
    Pin,
    is_instance_id,
    service_url_problem,
    validate_package_name,
    validate_subdir,
    validate_version,
)

__all__ = [
    "Resolver",
    "collect_problems",
    "resolve_file",
    "resolve_for_platforms",
]

#: ``resolver(package, version) -> Pin``; raise any exception to report a failure.
Resolver = Callable[[str, str], Pin]

#: A lookup slower than this (seconds, on average) moves the rest onto threads.
SLOW_LOOKUP_SECONDS = 0.002
MAX_LOOKUP_THREADS = 8


@dataclass(frozen=True, slots=True)
class _Line:
    """A package line that survived expansion and checks."""

    subdir: str
    package: str
    version: str
    line: int


def _expand_lines(
    file: EnsureFile, args: Mapping[str, str], problems: list[ResolveError] | None
) -> list[_Line]:
    """Steps 3-4: expand subdirs and templates, check names and versions.

    Raises the first problem, or appends every problem to ``problems`` when given.
    """

    def report(error: ResolveError) -> None:
        if problems is None:
            raise error
        problems.append(error)

    lines: list[_Line] = []
    for raw_subdir in sorted(file.packages_by_subdir):
        subdir_line = file.subdir_lines.get(raw_subdir, 0)
        try:
            subdir = expand_template(raw_subdir, args)
        except TemplateSkipped:
            continue
        except TemplateError as err:
            report(
                ResolveError(
                    f"normalizing {go_quote(raw_subdir)}: {err}",
                    code="bad-subdir",
                    line=subdir_line,
                    subject=raw_subdir,
                    offset=err.offset,
                )
            )
            continue
        try:
            validate_subdir(subdir)
        except ValidationError as err:
            report(ResolveError(str(err), code="bad-subdir", line=subdir_line, subject=raw_subdir))
            continue
        for definition in file.packages_by_subdir[raw_subdir]:
            line = definition.line
            try:
                package = expand_template(definition.template, args)
            except TemplateSkipped:
                continue
            except TemplateError as err:
                report(
                    ResolveError(
                        f"failed to expand package template (line {line}): {err}",
                        code="bad-template",
                        line=line,
                        subject=definition.template,
                        offset=err.offset,
                    )
                )
                continue
            try:
                validate_package_name(package)
            except ValidationError as err:
                report(
                    ResolveError(
                        f"bad package name (line {line}): {err}",
                        code="bad-package-name",
                        line=line,
                        subject=definition.template,
                    )
                )
                continue
            try:
                validate_version(definition.version)
            except ValidationError as err:
                report(
                    ResolveError(
                        f"bad package version (line {line}): {err}",
                        code="bad-version",
                        line=line,
                        subject=definition.version,
                    )
                )
                continue
            lines.append(_Line(subdir, package, definition.version, line))
    return lines


def _lookup_all(
    keys: Iterable[tuple[str, str]], resolver: Resolver
) -> dict[tuple[str, str], Pin | BaseException]:
    """Resolve each distinct (package, version) once.

    Instance-ID versions need no lookup. Lookups run in order on this thread while
    they are fast (a dict, a versions file); once they prove slow (a network
    repository), the remaining ones run on a thread pool.
    """
    results: dict[tuple[str, str], Pin | BaseException] = {}
    pending: list[tuple[str, str]] = []
    for key in dict.fromkeys(keys):
        package, version = key
        if is_instance_id(version):
            results[key] = Pin(package, version)
        else:
            pending.append(key)

    def lookup(key: tuple[str, str]) -> Pin | BaseException:
        try:
            return resolver(*key)
        except Exception as err:  # a resolver may fail in any way; report, never crash
            return err

    started = time.perf_counter()
    last = len(pending) - 1
    for index, key in enumerate(pending):
        results[key] = lookup(key)
        if index < last and (time.perf_counter() - started) > SLOW_LOOKUP_SECONDS * (index + 1):
            remaining = pending[index + 1 :]
            workers = min(MAX_LOOKUP_THREADS, len(remaining))
            with ThreadPoolExecutor(workers, thread_name_prefix="ensure-resolve") as pool:
                for other, outcome in zip(remaining, pool.map(lookup, remaining), strict=True):
                    results[other] = outcome
            break
    return results


def resolve_file(
    file: EnsureFile,
    resolver: Resolver,
    *,
    template_args: Mapping[str, str] | None = None,
    allow_duplicates: bool = False,
) -> ResolvedFile:
    """`EnsureFile.resolve`: pins per expanded subdir for one platform."""
    args = host_template_args() if template_args is None else template_args
    if file.service_url:
        problem = service_url_problem(file.service_url)
        if problem is not None:
            raise ResolveError(f"bad ServiceURL: {problem}", code="bad-service-url")
    result = ResolvedFile(
        service_url=file.service_url,
        paranoid_mode=file.paranoid_mode or NOT_PARANOID,
        override_install_mode=file.override_install_mode,
    )
    if not file.packages_by_subdir:
        return result
    lines = _expand_lines(file, args, None)
    found = _lookup_all(((ln.package, ln.version) for ln in lines), resolver)
    errors: list[EnsureFileError] = []
    reported: set[tuple[str, str]] = set()
    seen: dict[tuple[str, str], int] = {}
    by_subdir = result.packages_by_subdir
    for ln in lines:
        outcome = found[(ln.package, ln.version)]
        if isinstance(outcome, BaseException):
            if (ln.package, ln.version) not in reported:
                reported.add((ln.package, ln.version))
                errors.append(
                    ResolveError(
                        f"failed to resolve {ln.package}@{ln.version} (line {ln.line}): {outcome}",
                        code="resolve-failed",
                        line=ln.line,
                        subject=ln.version,
                    )
                )
            continue
        if not allow_duplicates:
            first = seen.get((ln.subdir, ln.package))
            if first is not None:
                errors.append(_duplicate(ln, first))
                continue
            seen[(ln.subdir, ln.package)] = ln.line
        pins = by_subdir.get(ln.subdir)
        if pins is None:
            pins = by_subdir[ln.subdir] = []
        pins.append(outcome)
    error = combine_errors(errors)
    if error is not None:
        raise error
    return result


def _duplicate(ln: _Line, first: int) -> ResolveError:
    return ResolveError(
        f"duplicate package in subdir {go_quote(ln.subdir)}: {go_quote(ln.package)}: "
        f"defined on line {first} and {ln.line}",
        code="duplicate-package",
        line=ln.line,
        subject=None,
    )


def verified_platforms(file: EnsureFile) -> list[tuple[str, str]]:
    """The file's distinct ``$VerifiedPlatform``s in order, or the host when it has none."""
    platforms = list(dict.fromkeys(file.verified_platforms))
    return platforms or [(host_os(), host_arch())]


def resolve_for_platforms(
    file: EnsureFile, resolver: Resolver, *, allow_duplicates: bool = False
) -> dict[tuple[str, str], ResolvedFile]:
    """Resolve for every ``$VerifiedPlatform`` (the host if none), each lookup once.

    Errors are prefixed ``when resolving <os>-<arch>: `` and raised together.
    """
    memo: dict[tuple[str, str], Pin | Exception] = {}

    def remembering(package: str, version: str) -> Pin:
        key = (package, version)
        if key not in memo:
            try:
                memo[key] = resolver(package, version)
            except Exception as err:  # replayed for the next platform
                memo[key] = err
        outcome = memo[key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    results: dict[tuple[str, str], ResolvedFile] = {}
    errors: list[EnsureFileError] = []
    for platform in verified_platforms(file):
        try:
            results[platform] = resolve_file(
                file,
                remembering,
                template_args=platform_template_args(*platform),
                allow_duplicates=allow_duplicates,
            )
        except EnsureFileError as err:
            errors.append(PlatformError(platform, err))
    error = combine_errors(errors)
    if error is not None:
        raise error
    return results


def collect_problems(
    file: EnsureFile, template_args: Mapping[str, str], *, allow_duplicates: bool = False
) -> list[ResolveError]:
    """Every expansion, name, version, subdir and duplicate problem for one platform.

    No repository is asked: this is the check behind ``invoke lint``.
    """
    problems: list[ResolveError] = []
    if file.service_url:
        problem = service_url_problem(file.service_url)
        if problem is not None:
            problems.append(ResolveError(f"bad ServiceURL: {problem}", code="bad-service-url"))
    lines = _expand_lines(file, template_args, problems)
    if not allow_duplicates:
        seen: dict[tuple[str, str], int] = {}
        for ln in lines:
            first = seen.get((ln.subdir, ln.package))
            if first is not None:
                problems.append(_duplicate(ln, first))
            else:
                seen[(ln.subdir, ln.package)] = ln.line
    return problems
