"""The lark parser against a plain line-by-line model of reference §1-5 (hypothesis).

The model reads a file the way the reference describes it, one physical line at a
time, with none of the grammar machinery; both must agree on every input: the
same settings and package lines, or the same error on the same line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from caproni_tasks.ensure import (
    EnsureFileError,
    EnsureParseError,
    TemplateError,
    ValidationError,
    expand_template,
    go_quote,
    parse,
    validate_subdir,
)
from caproni_tasks.ensure.validation import service_url_problem

LINUX = {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}

#: Reference §1: the whitespace set, spelled out independently of the parser's.
SPACES = (
    "\t\v\f\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


class ModelError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"failed to parse desired state (line {line}): {message}")
        self.line = line


@dataclass
class Model:
    service_url: str = ""
    paranoid_mode: str = ""
    resolved_versions: str = ""
    override_install_mode: str = ""
    platforms: list[tuple[str, str]] = field(default_factory=list)
    packages: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)


def _setting(model: Model, key: str, value: str) -> str | None:
    """The error message of one setting, or None."""
    if key == "$serviceurl":
        if model.service_url:
            return "$ServiceURL may only be set once per file"
        problem = service_url_problem(value)
        if problem is not None:
            return f"expecting '$ServiceURL <url>' but url is invalid: {problem}"
        model.service_url = value
    elif key == "$verifiedplatform":
        found = []
        for index, entry in enumerate(_fields(value), start=1):
            if entry.count("-") != 1:
                return (
                    f"invalid platform entry #{index}: platform must be <os>-<arch>, "
                    f"got {go_quote(entry)}"
                )
            os_name, arch = entry.split("-")
            found.append((os_name, arch))
        model.platforms.extend(found)
    elif key == "$paranoidmode":
        if value not in ("NotParanoid", "CheckPresence", "CheckIntegrity"):
            return f"bad $ParanoidMode: unrecognized paranoid mode {go_quote(value)}"
        model.paranoid_mode = value
    elif key == "$resolvedversions":
        model.resolved_versions = value
    elif key == "$overrideinstallmode":
        if value not in ("", "copy", "symlink"):
            return f"invalid install mode {go_quote(value)}"
        if value != "copy":
            return "only copy mode is allowed"
        model.override_install_mode = value
    else:
        return "unknown"
    return None


def _fields(value: str) -> list[str]:
    for space in SPACES:
        value = value.replace(space, " ")
    return [part for part in value.split(" ") if part]  # str.split() would cut at \x1c


def model_parse(text: str) -> Model:
    model = Model()
    settings_allowed = True
    subdir = ""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip(SPACES)
        if not line or line.startswith("#"):
            continue
        cut = next((i for i, ch in enumerate(line) if ch in SPACES), len(line))
        head, rest = line[:cut], line[cut:].strip(SPACES)
        key = head.replace("\u0130", "i").lower()
        if head[0] == "$":
            if not settings_allowed:
                raise ModelError(number, "$setting found after non-$setting statements")
            problem = _setting(model, key, rest)
            if problem == "unknown":
                problem = f"unknown $setting: {go_quote(head)}"
            if problem is not None:
                raise ModelError(number, problem)
        elif head[0] == "@":
            settings_allowed = False
            if key != "@subdir":
                raise ModelError(number, f"unknown @directive: {go_quote(head)}")
            try:
                expanded = expand_template(rest, LINUX, validate=True)
            except TemplateError as err:
                raise ModelError(number, f"bad subdir {go_quote(rest)}: {err}") from None
            try:
                validate_subdir(expanded)
            except ValidationError as err:
                raise ModelError(number, str(err)) from None
            subdir = rest
        else:
            settings_allowed = False
            model.packages.setdefault(subdir, []).append((head, rest, number))
    return model


def _as_model(text: str) -> Model | str:
    try:
        parsed = parse(text, host_args=LINUX)
    except EnsureParseError as err:
        return str(err)
    return Model(
        parsed.service_url,
        parsed.paranoid_mode,
        parsed.resolved_versions,
        parsed.override_install_mode,
        list(parsed.verified_platforms),
        {
            subdir: [(d.template, d.version, d.line) for d in defs]
            for subdir, defs in parsed.packages_by_subdir.items()
        },
    )


def _expected(text: str) -> Model | str:
    try:
        return model_parse(text)
    except ModelError as err:
        return str(err)


ALPHABET = SPACES + "\n\r\x00\x1c\x1d\x1e\x1f\ufeff\u200b\u0130\u212a\u017f$@#{}=,/\\:.-_"
WORDS = [
    "$ServiceURL",
    "$SERVICEURL",
    "$ServİceURL",
    "$VerifiedPlatform",
    "$ParanoidMode",
    "$ResolvedVersions",
    "$OverrideInstallMode",
    "$Bogus",
    "$",
    "@Subdir",
    "@SUBDİR",
    "@Other",
    "@",
    "#",
    "pkg/${platform}",
    "https://x",
    "linux-amd64",
    "a-b",
    "CheckPresence",
    "copy",
    "symlink",
    "${os=linux}",
    "${os}",
    "a/b",
    "..",
    "latest",
]
pieces = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet=st.sampled_from(ALPHABET), max_size=3),
    st.text(alphabet="az09", min_size=1, max_size=3),
)
documents = st.lists(pieces, max_size=30).map("".join)


@settings(
    max_examples=int(os.environ.get("ENSURE_MODEL_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(documents)
@example("\ufeff$ServiceURL https://x\n")
@example("a\rb c\n")
@example("$VerifiedPlatform\u1680a-b\u3000c-d\u2028\n@Subdir\u0085x\u00a0\npkg v\u202fw\r\n")
@example("$ServİceURL https://x\n$OverrİdeInstallMode copy")
@example("p v\n\x1c$Bogus\n")
@example("#\n@SUBDIR ${os=mac}\np ${os}\n\n\n$x")
def test_parser_agrees_with_a_line_by_line_model(text: str) -> None:
    assert _as_model(text) == _expected(text)


def test_only_parse_errors_come_out_of_parse() -> None:
    # A sanity check of the model's error shape against a known case.
    result = _expected("a b\n$ServiceURL https://x\n")
    assert result == (
        "failed to parse desired state (line 2): $setting found after non-$setting statements"
    )
    assert isinstance(_as_model("a b\n$ServiceURL https://x\n"), str)
    assert not issubclass(ModelError, EnsureFileError)
