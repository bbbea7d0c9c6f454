"""Resolving an `EnsureFile` for a platform: expand templates, check, pin, de-duplicate.

Order and wording follow the original client: subdirs in byte order, lines in file
order; the first expansion or validation problem is raised alone; lookup failures
and duplicates are gathered into one error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from caproni_tasks.ensure.errors import (
    EnsureFileError,
    MultiError,
    PlatformError,
    ResolveError,
    ValidationError,
    combine_errors,
)
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
    is_valid_package_name,
    service_url_problem,
    validate_instance_id,
    validate_package_name,
    validate_subdir,
    validate_version,
    version_kind,
)
from caproni_tasks.ensure.values import (
    NOT_PARANOID,
    PARANOID_MODES,
    Resolvable,
    ResolvedFile,
    Resolver,
)

__all__ = [
    "Resolver",
    "collect_problems",
    "resolve_file",
    "resolve_for_platforms",
]

#: A lookup slower than this (seconds, on average) moves the rest onto threads.
SLOW_LOOKUP_SECONDS = 0.002
MAX_LOOKUP_THREADS = 8


#: A package line that survived expansion and checks:
#: (expanded subdir, expanded package, version, line, version is an instance ID).
_Line = tuple[str, str, str, int, bool]


def _expand_lines(
    file: Resolvable, args: Mapping[str, str], problems: list[ResolveError] | None
) -> list[_Line]:
    """Steps 3-4: expand subdirs and templates, check names and versions.

    Raises the first problem, or appends every problem to ``problems`` when given.
    """

    def report(error: ResolveError) -> None:
        if problems is None:
            raise error
        problems.append(error)

    lines: list[_Line] = []
    kinds: dict[str, object] = {}  # version -> version_kind(version), checked once each
    for raw_subdir in sorted(file.packages_by_subdir):
        subdir_line = file.subdir_lines.get(raw_subdir, 0)
        try:
            subdir = expand_template(raw_subdir, args)
            validate_subdir(subdir)
        except TemplateSkipped:
            continue
        except (TemplateError, ValidationError) as err:
            report(
                ResolveError(
                    f"normalizing {go_quote(raw_subdir)}: {err}",
                    code="bad-subdir",
                    line=subdir_line,
                    subject=raw_subdir,
                    offset=err.offset if isinstance(err, TemplateError) else 0,
                )
            )
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
            if not is_valid_package_name(package):
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
            version = definition.version
            kind = kinds.get(version, _UNKNOWN)
            if kind is _UNKNOWN:
                kind = kinds[version] = version_kind(version)
            if kind is None:
                try:
                    validate_version(version)
                except ValidationError as err:
                    report(
                        ResolveError(
                            f"bad package version (line {line}): {err}",
                            code="bad-version",
                            line=line,
                            subject=version,
                        )
                    )
                continue
            lines.append((subdir, package, version, line, kind == "instance_id"))
    return lines


_UNKNOWN = object()


def _lookup_all(
    lines: Iterable[_Line], resolver: Resolver
) -> dict[tuple[str, str], Pin | BaseException]:
    """Resolve each distinct (package, version) once.

    Instance-ID versions need no lookup. Lookups run in order on this thread while
    they are fast (a dict, a versions file); once they prove slow (a network
    repository), the remaining ones run on a thread pool.
    """
    results: dict[tuple[str, str], Pin | BaseException] = {}
    queued: dict[tuple[str, str], None] = {}  # an ordered set
    for _, package, version, _, version_is_id in lines:
        key = (package, version)
        if version_is_id:
            results[key] = Pin(package, version)
        else:
            queued[key] = None
    pending = list(queued)

    def lookup(key: tuple[str, str]) -> Pin | BaseException:
        try:
            return _checked_pin(key[0], resolver(*key))
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


def _checked_pin(package: str, pin: Pin) -> Pin:
    """The resolver's answer, refused unless it is a valid pin of ``package``."""
    if not isinstance(pin, Pin):
        raise TypeError(f"the resolver returned {type(pin).__name__}, not a Pin")
    if pin.package != package:
        raise ValueError(
            f"the resolver returned a pin of {go_quote(pin.package)}, expecting {go_quote(package)}"
        )
    validate_instance_id(pin.instance_id, any_hash=True)
    return pin


def resolve_file(
    file: Resolvable,
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
    if file.paranoid_mode and file.paranoid_mode not in PARANOID_MODES:
        raise ResolveError(
            f"unrecognized paranoid mode {go_quote(file.paranoid_mode)}",
            code="bad-paranoid-mode",
        )
    result = ResolvedFile(
        service_url=file.service_url,
        paranoid_mode=file.paranoid_mode or NOT_PARANOID,
        override_install_mode=file.override_install_mode,
    )
    if not file.packages_by_subdir:
        return result
    lines = _expand_lines(file, args, None)
    found = _lookup_all(lines, resolver)
    errors: list[EnsureFileError] = []
    seen: dict[tuple[str, str], int] = {}
    by_subdir = result.packages_by_subdir
    for subdir, package, version, line, _ in lines:
        outcome = found[(package, version)]
        if isinstance(outcome, BaseException):
            # Looked up once, reported on every line that uses it (as the client does).
            errors.append(
                ResolveError(
                    f"failed to resolve {package}@{version} (line {line}): {outcome}",
                    code="resolve-failed",
                    line=line,
                    subject=version,
                )
            )
            continue
        if not allow_duplicates:
            first = seen.get((subdir, package))
            if first is not None:
                errors.append(_duplicate(subdir, package, first, line))
                continue
            seen[(subdir, package)] = line
        pins = by_subdir.get(subdir)
        if pins is None:
            pins = by_subdir[subdir] = []
        pins.append(outcome)
    error = combine_errors(errors)
    if error is not None:
        raise error
    return result


def _duplicate(subdir: str, package: str, first: int, line: int) -> ResolveError:
    return ResolveError(
        f"duplicate package in subdir {go_quote(subdir)}: {go_quote(package)}: "
        f"defined on line {first} and {line}",
        code="duplicate-package",
        line=line,
    )


def verified_platforms(file: Resolvable) -> list[tuple[str, str]]:
    """The file's distinct ``$VerifiedPlatform``s in order, or the host when it has none."""
    platforms = list(dict.fromkeys(file.verified_platforms))
    return platforms or [(host_os(), host_arch())]


def resolve_for_platforms(
    file: Resolvable, resolver: Resolver, *, allow_duplicates: bool = False
) -> dict[tuple[str, str], ResolvedFile]:
    """Resolve for every ``$VerifiedPlatform`` (the host if none), each lookup once.

    Each error is prefixed ``when resolving <os>-<arch>: `` and all are raised together
    as one flat list (a platform's several errors are not nested).
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
        except MultiError as err:  # flattened: each error names its platform
            errors.extend(PlatformError(platform, each) for each in err.errors)
        except EnsureFileError as err:
            errors.append(PlatformError(platform, err))
    error = combine_errors(errors)
    if error is not None:
        raise error
    return results


def collect_problems(
    file: Resolvable, template_args: Mapping[str, str], *, allow_duplicates: bool = False
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
        for subdir, package, _, line, _ in lines:
            first = seen.get((subdir, package))
            if first is not None:
                problems.append(_duplicate(subdir, package, first, line))
            else:
                seen[(subdir, package)] = line
    return problems
