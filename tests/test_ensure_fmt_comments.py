"""``ensure.fmt`` keeps comments: the comment-keeping canonical form and its properties.

`EnsureFile.serialize` stays the cipd client's exact output; `format_keeping_comments`
is the form ``invoke ensure.fmt`` writes by default. Properties (hypothesis): the
parsed meaning never changes, formatting is idempotent, every comment line survives,
and stripping the comments gives the client's output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from helpers_session import invoke_exit_code
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from caproni_tasks.ensure import EnsureParseError, format_keeping_comments, parse

LICENSED = """\
# Copyright 2024 Example Ltd.
# SPDX-License-Identifier: Apache-2.0

# where packages come from
$ServiceURL https://chrome-infra-packages.appspot.com
$VerifiedPlatform linux-amd64 mac-arm64
# re-check files on every run
$ParanoidMode CheckPresence

# build tools
zz/last/pkg   latest
# the cipd client itself
infra/tools/cipd/${os}-${arch} latest

# linters
b/lint latest
a/lint   latest
@Subdir python
# pip, pinned
python/wheels/pip version:8.1.2
# end of file
"""

LICENSED_FORMATTED = """\
# Copyright 2024 Example Ltd.
# SPDX-License-Identifier: Apache-2.0

# where packages come from
$ServiceURL https://chrome-infra-packages.appspot.com
# re-check files on every run
$ParanoidMode CheckPresence

$VerifiedPlatform linux-amd64
$VerifiedPlatform mac-arm64

# the cipd client itself
infra/tools/cipd/${os}-${arch}  latest
# build tools
zz/last/pkg                     latest

# linters
a/lint                          latest
b/lint                          latest

@Subdir python
# pip, pinned
python/wheels/pip  version:8.1.2
# end of file
"""


def comment_lines(text: str) -> Counter[str]:
    return Counter(line.strip() for line in text.split("\n") if line.strip().startswith("#"))


def test_comments_stay_with_their_lines_and_groups_keep_their_order() -> None:
    assert format_keeping_comments(LICENSED) == LICENSED_FORMATTED
    assert format_keeping_comments(LICENSED_FORMATTED) == LICENSED_FORMATTED
    assert parse(LICENSED_FORMATTED) == parse(LICENSED)


def test_serialize_stays_the_cipd_clients_exact_output() -> None:
    assert parse(LICENSED).serialize() == (
        "$ServiceURL https://chrome-infra-packages.appspot.com\n"
        "$ParanoidMode CheckPresence\n"
        "\n"
        "$VerifiedPlatform linux-amd64\n"
        "$VerifiedPlatform mac-arm64\n"
        "\n"
        "a/lint                          latest\n"
        "b/lint                          latest\n"
        "infra/tools/cipd/${os}-${arch}  latest\n"
        "zz/last/pkg                     latest\n"
        "\n"
        "@Subdir python\n"
        "python/wheels/pip  version:8.1.2\n"
    )


def test_without_comments_or_groups_it_is_the_cipd_form() -> None:
    text = "$ResolvedVersions v\n@Subdir b\nz 1:1\n@Subdir\ny  latest\nx latest\n"
    assert format_keeping_comments(text) == parse(text).serialize()


def test_comments_of_statements_the_canonical_form_drops_are_kept() -> None:
    text = (
        "# not paranoid\n$ParanoidMode NotParanoid\n# versions\n$ResolvedVersions a\n"
        "$ResolvedVersions b\n@Subdir empty\n# nothing here\n@Subdir\npkg latest\n"
        "@Subdir empty\n# tail\n"
    )
    out = format_keeping_comments(text)
    assert out == (
        "# not paranoid\n# versions\n$ResolvedVersions b\n\n# nothing here\npkg  latest\n# tail\n"
    )
    assert comment_lines(out) == comment_lines(text)
    assert format_keeping_comments(out) == out


def test_comment_only_and_empty_files() -> None:
    assert format_keeping_comments("") == ""
    assert format_keeping_comments("\n\n") == ""
    assert format_keeping_comments("  # a\n\n\n#b  \n\n") == "# a\n\n#b\n"


def test_repeated_subdir_sections_are_groups_of_one_section() -> None:
    text = "@Subdir s\nb 1:1\n@Subdir\nr latest\n@Subdir s\n# second\na 1:1\n"
    assert format_keeping_comments(text) == ("r  latest\n\n@Subdir s\nb  1:1\n\n# second\na  1:1\n")


def test_parse_errors_are_raised_not_formatted() -> None:
    with pytest.raises(EnsureParseError):
        format_keeping_comments("# fine\npkg latest\n$ServiceURL https://late.example\n")


# --- properties ------------------------------------------------------------------------

_SPACE = st.sampled_from(["", " ", "  ", "\t", "\u3000"])
_COMMENT = st.builds(
    lambda pad, body: f"{pad}#{body}",
    _SPACE,
    st.sampled_from(["", " note", " licence: MIT", "# double", " $ServiceURL x", " @Subdir y"]),
)
_SETTING = st.sampled_from(
    [
        "$ServiceURL https://example.com",
        "$ParanoidMode CheckPresence",
        "$ParanoidMode NotParanoid",
        "$paranoidmode CheckIntegrity",
        "$ResolvedVersions tools.versions",
        "$ResolvedVersions other.versions",
        "$OverrideInstallMode copy",
        "$VerifiedPlatform linux-amd64 mac-arm64",
        "$VerifiedPlatform windows-386",
    ]
)
_BODY = st.one_of(
    st.builds(
        lambda name, pad, version: f"{name}{pad} {version}",
        st.sampled_from(["a", "b/c", "tools/${platform}", "z/${os=linux}", "x/y/zz", "b/c"]),
        _SPACE,
        st.sampled_from(["latest", "version:1.2", "git_revision:abc", "v:two words"]),
    ),
    st.sampled_from(["@Subdir", "@Subdir bin", "@SUBDIR a/b", "@Subdir bin", "@Subdir zz"]),
)
_ANY = st.one_of(_COMMENT, st.just(""), _SPACE)


@st.composite
def ensure_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for line in draw(st.lists(st.one_of(_SETTING, _COMMENT, st.just("")), max_size=8)):
        lines.append(line)
    for line in draw(st.lists(st.one_of(_BODY, _BODY, _ANY), max_size=20)):
        lines.append(draw(_SPACE) + line)
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(lines)
    return text + (ending if draw(st.booleans()) else "")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ensure_texts())
def test_keeping_comments_never_changes_meaning_and_is_idempotent(text: str) -> None:
    try:
        meaning = parse(text)
    except EnsureParseError:
        assume(False)
        return
    once = format_keeping_comments(text)
    assert parse(once) == meaning
    assert format_keeping_comments(once) == once
    assert comment_lines(once) == comment_lines(text)
    # Stripping the comments gives exactly what the cipd client writes.
    assert parse(once).serialize() == meaning.serialize()
    assert once == "" or (once.endswith("\n") and not once.endswith("\n\n"))


def test_the_documented_example_is_what_fmt_writes() -> None:
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "ensure.md").read_text()
    before, after = re.findall(r"^```ensure\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    assert format_keeping_comments(before) == after
    assert parse(after) == parse(before)


# --- the task --------------------------------------------------------------------------


run = invoke_exit_code


def test_fmt_keeps_comments_and_check_passes_on_commented_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "tools.ensure"
    target.write_text(LICENSED_FORMATTED)
    assert run(["ensure.fmt", "--check"]) == 0
    target.write_text(LICENSED)
    assert run(["ensure.fmt", "--check"]) == 1
    assert "not in canonical form" in capsys.readouterr().err
    assert run(["ensure.fmt"]) == 0
    assert target.read_text() == LICENSED_FORMATTED
    assert run(["ensure.fmt", "--check"]) == 0


def test_fmt_strip_comments_writes_the_cipd_clients_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "tools.ensure"
    target.write_text(LICENSED)
    assert run(["ensure.fmt", "--strip-comments", "--check"]) == 1
    assert "run 'invoke ensure.fmt --strip-comments'" in capsys.readouterr().err
    assert run(["ensure.fmt", "--strip-comments"]) == 0
    assert target.read_text() == parse(LICENSED).serialize()
    assert "#" not in target.read_text()
    assert run(["ensure.fmt", "--strip-comments", "--check"]) == 0
