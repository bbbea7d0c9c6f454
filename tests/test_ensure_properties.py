"""Properties of the ensure-file language (hypothesis, modest example counts)."""

from __future__ import annotations

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caproni_tasks.ensure import (
    EnsureFile,
    EnsureFileError,
    PackageDef,
    Pin,
    TemplateError,
    TemplateSkipped,
    expand_template,
    parse,
    parse_versions_file,
)
from caproni_tasks.ensure.parser import WHITESPACE

LINUX = {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that exercise the lexer: every kind of whitespace, line breaks of other
# conventions, controls, the statement sigils and template syntax.
TRICKY = WHITESPACE + "\n\x00\x1c\x1d\x1e\x1f\ufeff\u200b\u0130\u017f\u0131" + "$@#{}=,/\\:.-_"
tricky_text = st.text(
    alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(), st.sampled_from("aZ09")),
    max_size=120,
)
keywordish = st.sampled_from(
    [
        "$ServiceURL",
        "$serviceurl",
        "$VerifiedPlatform",
        "$ParanoidMode",
        "$ResolvedVersions",
        "$OverrideInstallMode",
        "@Subdir",
        "@subdir",
        "$",
        "@",
        "#",
        "pkg/${platform}",
        "${os=linux}",
    ]
)
line_like = st.lists(
    st.tuples(keywordish, tricky_text).map(lambda kv: f"{kv[0]} {kv[1]}") | tricky_text,
    max_size=8,
).map("\n".join)


@SETTINGS
@given(st.one_of(tricky_text, line_like))
def test_arbitrary_text_raises_only_ensure_file_errors(text: str) -> None:
    try:
        parsed = parse(text, host_args=LINUX)
    except EnsureFileError:
        return
    canonical = parsed.serialize()
    # fmt of fmt = fmt, and the canonical text means the same.
    reparsed = parse(canonical, host_args=LINUX)
    assert reparsed.serialize() == canonical
    assert reparsed == parsed
    with contextlib.suppress(EnsureFileError):
        reparsed.resolve(_unresolvable, template_args=LINUX)


def _unresolvable(package: str, version: str) -> Pin:
    raise LookupError(f"{package}@{version}")


@SETTINGS
@given(st.one_of(tricky_text, line_like))
def test_versions_file_parser_raises_only_ensure_file_errors(text: str) -> None:
    try:
        versions = parse_versions_file(text)
    except EnsureFileError:
        return
    assert parse_versions_file(versions.serialize()) == versions


# --- generated files -------------------------------------------------------------------

NAME_CHARS = string.ascii_lowercase + string.digits + "_-."
component = st.text(NAME_CHARS, min_size=1, max_size=6).filter(lambda c: c.strip(".") != "")
template_part = st.one_of(
    component, st.sampled_from(["${os}", "${arch}", "${platform}", "${os=linux,mac}"])
)
# A template never starts with "$", "@" or "#": such a HEAD is a setting, a directive or
# a comment, so the file could not say it.
templates = st.tuples(component, st.lists(template_part, max_size=2)).map(
    lambda parts: "/".join([parts[0], *parts[1]])
)
refs = st.text(string.ascii_lowercase + string.digits + "_./-", min_size=1, max_size=12).filter(
    lambda r: len(r) != 40
)
tags = st.tuples(
    st.text(string.ascii_lowercase + "_-", min_size=1, max_size=6),
    st.text(string.ascii_letters + string.digits + " .:@", min_size=1, max_size=10),
).map(lambda kv: f"{kv[0]}:{kv[1].strip() or 'x'}")
versions = st.one_of(refs, tags, st.sampled_from(["", "a b  c", "${not-expanded}"]))
subdirs = st.one_of(
    st.just(""),
    st.lists(component.filter(lambda c: c not in (".", "..")), min_size=1, max_size=3).map(
        "/".join
    ),
    st.sampled_from(["bin/${os}", "${platform}/x", "win/${os=windows}", "with space"]),
)
platform_part = st.text(string.ascii_lowercase + string.digits + "_", max_size=8)
url = st.sampled_from(["", "https://chrome-infra-packages.appspot.com", "file:///srv/repo"])


@st.composite
def ensure_files(draw: st.DrawFn) -> EnsureFile:
    packages: dict[str, list[PackageDef]] = {}
    for subdir in draw(st.lists(subdirs, max_size=4, unique=True)):
        packages[subdir] = draw(
            st.lists(st.builds(PackageDef, templates, versions), min_size=1, max_size=5)
        )
    return EnsureFile(
        service_url=draw(url),
        paranoid_mode=draw(st.sampled_from(["", "NotParanoid", "CheckPresence", "CheckIntegrity"])),
        resolved_versions=draw(st.sampled_from(["", "tools.versions", "dir with space/v"])),
        override_install_mode=draw(st.sampled_from(["", "copy"])),
        verified_platforms=draw(st.lists(st.tuples(platform_part, platform_part), max_size=4)),
        packages_by_subdir=packages,
    )


@SETTINGS
@given(ensure_files())
def test_parse_of_serialize_is_identity(file: EnsureFile) -> None:
    text = file.serialize()
    assert parse(text, host_args=LINUX) == file


@SETTINGS
@given(ensure_files())
def test_serialize_is_idempotent(file: EnsureFile) -> None:
    once = file.serialize()
    assert parse(once, host_args=LINUX).serialize() == once


template_text = st.lists(
    st.sampled_from(
        ["${os}", "${arch}", "${platform}", "${", "}", "$", "=", "x", "/", "${os=linux}"]
    )
    | st.sampled_from(["${bogus}", "${${os}}", "${}", "$$"]),
    max_size=8,
).map("".join)
variable_maps = st.one_of(
    st.just(LINUX),
    st.dictionaries(
        st.sampled_from(["os", "arch", "platform", "a}", "$x"]), st.text("ab${}=", max_size=4)
    ),
)


@SETTINGS
@given(template_text, variable_maps)
def test_template_fast_path_equals_the_reference_algorithm(
    template: str, variables: dict[str, str]
) -> None:
    from caproni_tasks.ensure.template import _expand

    def outcome(function: object) -> tuple[str, str]:
        try:
            return ("ok", function())  # type: ignore[operator]
        except TemplateSkipped:
            return ("skip", "")
        except TemplateError as err:
            return ("error", str(err))

    assert outcome(lambda: expand_template(template, variables)) == outcome(
        lambda: _expand(template, variables, validate=False)
    )
