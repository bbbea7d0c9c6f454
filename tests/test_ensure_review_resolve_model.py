"""`EnsureFile.resolve` against a plain model of reference §8 (hypothesis).

The model follows the reference step by step, with none of the implementation's
shortcuts (version-kind cache, fast template path, lookup de-duplication,
threads); both must give the same pins or the same error text.
"""

from __future__ import annotations

import hashlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caproni_tasks.ensure import (
    EnsureFile,
    EnsureFileError,
    PackageDef,
    Pin,
    TemplateError,
    TemplateSkipped,
    ValidationError,
    expand_template,
    go_quote,
    instance_id_from_sha256,
    is_instance_id,
    platform_template_args,
    validate_package_name,
    validate_subdir,
    validate_version,
)

IID = instance_id_from_sha256(hashlib.sha256(b"x").digest())
PLATFORMS = [
    platform_template_args("linux", "amd64"),
    platform_template_args("mac", "arm64"),
    platform_template_args("windows", "386"),
    platform_template_args("..", "x"),
]
#: Versions the fake repository does not know.
MISSING = {"v:missing", "gone"}


def repository(package: str, version: str) -> Pin:
    if version in MISSING:
        raise LookupError("no such version")
    return Pin(package, instance_id_from_sha256(hashlib.sha256(version.encode()).digest()))


def _multi(errors: list[str]) -> str:
    if len(errors) == 1:
        return errors[0]
    lines = [f"err[{i}]: {e}" for i, e in enumerate(errors[:20])]
    if len(errors) > 20:
        lines.append(f"err[20:{len(errors)}] <omitted>")
    return "\n".join(lines)


def model_resolve(
    file: EnsureFile, args: dict[str, str], allow_duplicates: bool
) -> dict[str, list[Pin]] | str:
    if not file.packages_by_subdir:
        return {}
    items: list[tuple[str, str, PackageDef]] = []
    for raw in sorted(file.packages_by_subdir):
        try:
            subdir = expand_template(raw, args)
        except TemplateSkipped:
            continue
        except TemplateError as err:
            return f"normalizing {go_quote(raw)}: {err}"
        try:
            validate_subdir(subdir)
        except ValidationError as err:
            return f"normalizing {go_quote(raw)}: {err}"
        for definition in file.packages_by_subdir[raw]:
            line = definition.line
            try:
                package = expand_template(definition.template, args)
            except TemplateSkipped:
                continue
            except TemplateError as err:
                return f"failed to expand package template (line {line}): {err}"
            try:
                validate_package_name(package)
            except ValidationError as err:
                return f"bad package name (line {line}): {err}"
            try:
                validate_version(definition.version)
            except ValidationError as err:
                return f"bad package version (line {line}): {err}"
            items.append((subdir, package, definition))
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    result: dict[str, list[Pin]] = {}
    for subdir, package, definition in items:
        version, line = definition.version, definition.line
        if is_instance_id(version):
            pin = Pin(package, version)
        else:
            try:
                pin = repository(package, version)
            except LookupError as err:
                errors.append(f"failed to resolve {package}@{version} (line {line}): {err}")
                continue
        if not allow_duplicates:
            first = seen.get((subdir, package))
            if first is not None:
                errors.append(
                    f"duplicate package in subdir {go_quote(subdir)}: {go_quote(package)}: "
                    f"defined on line {first} and {line}"
                )
                continue
            seen[(subdir, package)] = line
        result.setdefault(subdir, []).append(pin)
    return _multi(errors) if errors else result


templates = st.sampled_from(
    [
        "a",
        "a/b",
        "t/${platform}",
        "t/${os}",
        "t/${os=linux,mac}",
        "t/${arch=amd64}",
        "T/${os=mac}",
        "t/${bogus}",
        "t/${os=linux}/${bogus}",
        "x/$",
        "..",
        "a//b",
        "t/${os}-${arch}",
    ]
)
versions = st.sampled_from(
    ["latest", "v:1", "v:missing", "gone", IID, "BAD VERSION", "k: v", "${os}", "a" * 40]
)
subdirs = st.sampled_from(
    ["", "bin", "${os}", "${os=linux}", "${os=mac,windows}/x", "a/${arch}", "${nope}", "linux"]
)
files = st.dictionaries(
    subdirs, st.lists(st.tuples(templates, versions), min_size=1, max_size=6), max_size=4
).map(
    lambda raw: EnsureFile(
        packages_by_subdir={
            subdir: [PackageDef(t, v, 10 * n + i + 1) for i, (t, v) in enumerate(defs)]
            for n, (subdir, defs) in enumerate(raw.items())
        }
    )
)


@settings(
    max_examples=int(os.environ.get("ENSURE_MODEL_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(files, st.sampled_from(PLATFORMS), st.booleans())
def test_resolve_agrees_with_a_plain_model(
    file: EnsureFile, args: dict[str, str], allow_duplicates: bool
) -> None:
    expected = model_resolve(file, args, allow_duplicates)
    try:
        got: dict[str, list[Pin]] | str = file.resolve(
            repository, template_args=args, allow_duplicates=allow_duplicates
        ).packages_by_subdir
    except EnsureFileError as err:
        got = str(err)
    assert got == expected


def test_more_than_twenty_errors_are_cut_the_same_way() -> None:
    file = EnsureFile(
        packages_by_subdir={"": [PackageDef(f"p{i}", "gone", i + 1) for i in range(23)]}
    )
    expected = model_resolve(file, PLATFORMS[0], False)
    assert isinstance(expected, str)
    assert expected.endswith("\nerr[20:23] <omitted>")
    try:
        file.resolve(repository, template_args=PLATFORMS[0])
    except EnsureFileError as err:
        assert str(err) == expected
    else:
        raise AssertionError("resolve should fail")
