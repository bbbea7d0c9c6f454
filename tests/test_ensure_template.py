"""Reference §6: template variables, host values, expansion, validate mode."""

from __future__ import annotations

import platform
import re
import struct
import sys

import pytest

from caproni_tasks.ensure import (
    EnsureFileError,
    TemplateError,
    TemplateSkipped,
    expand_template,
    host_template_args,
    platform_template_args,
)
from caproni_tasks.ensure import template as template_module
from caproni_tasks.ensure.grammar import grammar_text, template_parser

LINUX = platform_template_args("linux", "amd64")


def expand(text: str, *, validate: bool = False) -> str:
    return expand_template(text, LINUX, validate=validate)


def test_platform_variables() -> None:
    assert LINUX == {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}


def test_any_mapping_of_variables() -> None:
    assert expand_template("${flavour}/x", {"flavour": "debug"}) == "debug/x"


def test_host_args_are_consistent() -> None:
    args = host_template_args()
    assert args["platform"] == f"{args['os']}-{args['arch']}"
    assert args["os"] in {
        "linux",
        "mac",
        "windows",
        "freebsd",
        "netbsd",
        "openbsd",
        "android",
        "ios",
        "aix",
        "dragonfly",
        "illumos",
        "solaris",
        "plan9",
    }


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("i386", "386"),
        ("i686", "386"),
        ("x86", "386"),
        ("armv7l", "armv7l"),
        ("armv6l", "armv6l"),
        ("armv5tel", "armv6l"),
        ("armv4", "armv6l"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
        ("mips64el", "mips64le"),
        ("loongarch64", "loong64"),
    ],
)
def test_machine_to_arch_table(monkeypatch: pytest.MonkeyPatch, machine: str, arch: str) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(struct, "calcsize", lambda fmt: 8)
    assert template_module.host_arch() == arch


@pytest.mark.parametrize(
    ("sys_platform", "os_name"),
    [
        ("linux", "linux"),
        ("darwin", "mac"),
        ("win32", "windows"),
        ("freebsd14", "freebsd"),
        ("openbsd7", "openbsd"),
        ("sunos5", "solaris"),
        ("aix7", "aix"),
    ],
)
def test_os_names(monkeypatch: pytest.MonkeyPatch, sys_platform: str, os_name: str) -> None:
    monkeypatch.setattr(sys, "platform", sys_platform)
    assert template_module.host_os() == os_name


def test_plain_variable() -> None:
    assert expand("a/${os}-${arch}/${platform}") == "a/linux-amd64/linux-amd64"


def test_unknown_variable_quotes_whole_reference() -> None:
    with pytest.raises(TemplateError) as err:
        expand("a/${nope}")
    assert str(err.value) == 'unknown variable "${nope}"'
    assert err.value.offset == 2
    assert isinstance(err.value, EnsureFileError)


def test_conditional_match_substitutes() -> None:
    assert expand("a/${os=mac,linux}") == "a/linux"


def test_conditional_mismatch_skips() -> None:
    with pytest.raises(TemplateSkipped):
        expand("a/${os=mac,windows}")


def test_conditional_unknown_name_is_an_error() -> None:
    with pytest.raises(TemplateError, match=re.escape('unknown variable "${flavour=a}"')):
        expand("${flavour=a}")


def test_conditional_values_are_not_trimmed() -> None:
    with pytest.raises(TemplateSkipped):
        expand("${os= linux}")


def test_empty_condition_matches_only_empty_value() -> None:
    with pytest.raises(TemplateSkipped):
        expand("${os=}")
    assert expand_template("x${os=}", {"os": ""}) == "x"


def test_split_at_first_equals() -> None:
    with pytest.raises(TemplateSkipped):
        expand("${os=a=b}")
    assert expand_template("${os=a=b}", {"os": "a=b"}) == "a=b"


def test_skip_wins_over_errors() -> None:
    with pytest.raises(TemplateSkipped):
        expand("${os=nope}/${bogus}")
    with pytest.raises(TemplateSkipped):
        expand("${bogus}/${os=nope}/$")


def test_one_pass_no_rescan() -> None:
    # The substituted "$" is left over, so the result is rejected, not rescanned.
    with pytest.raises(TemplateError, match="unable to process"):
        expand_template("${a}", {"a": "${b}", "b": "x"})


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        # A substituted value must not combine with the text around it into a new
        # reference: "${${os}" is the (unknown) first reference, whatever "os" holds.
        ("${${os}}", platform_template_args("arch", "x")),
        ("${a${b}}", {"b": "X", "aX": "Y"}),
        ("${a${b}}", {"aX": "Y", "b": "X"}),
    ],
)
def test_substituted_text_never_forms_a_new_reference(text: str, variables: dict[str, str]) -> None:
    with pytest.raises(TemplateError) as err:
        expand_template(text, variables)
    assert str(err.value).startswith('unknown variable "${')


@pytest.mark.parametrize("text", ["${platform", "$platform", "${platform}$", "a$", "$"])
def test_leftover_dollar(text: str) -> None:
    with pytest.raises(TemplateError) as err:
        expand(text)
    assert str(err.value) == f'unable to process some variables in "{text}"'


def test_nested_reference_is_unknown_variable() -> None:
    with pytest.raises(TemplateError) as err:
        expand("${platform${os}}")
    assert str(err.value) == 'unknown variable "${platform${os}"'


def test_empty_reference() -> None:
    with pytest.raises(TemplateError) as err:
        expand("${}")
    assert str(err.value) == 'unknown variable "${}"'


def test_last_error_wins() -> None:
    with pytest.raises(TemplateError) as err:
        expand("${first}/${second}")
    assert str(err.value) == 'unknown variable "${second}"'


def test_unknown_variable_beats_leftover_dollar() -> None:
    with pytest.raises(TemplateError, match="unknown variable"):
        expand("$x/${bogus}")


def test_quoting_in_messages_is_go_style() -> None:
    with pytest.raises(TemplateError) as err:
        expand('${"q"}')
    assert str(err.value) == 'unknown variable "${\\"q\\"}"'


def test_no_reference_is_returned_as_is() -> None:
    assert expand("plain/name") == "plain/name"


def test_validate_mode_substitutes_and_never_skips() -> None:
    assert expand("bin/${os=windows}", validate=True) == "bin/linux"
    with pytest.raises(TemplateError):
        expand("${bogus=x}", validate=True)


def test_reference_regex_is_the_grammars_terminal() -> None:
    assert 'VARIABLE_REF: "${" VARIABLE_NAME ("=" VARIABLE_CHOICES)? "}"' in grammar_text()
    parser = template_parser()
    for text in ["a/${os}/${x=1,2}$", "${a${b}}", "$}{${", "", "${=}", "x${}y"]:
        tokens = [(t.type, str(t)) for t in parser.lex(text)] if text else []
        refs = [value for kind, value in tokens if kind == "VARIABLE_REF"]
        assert refs == [m.group(0) for m in template_module.VARIABLE_RE.finditer(text)]
        assert "".join(value for _, value in tokens) == text
