"""The ${...} language: load-time variables, run-time runtime variables, $$ escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caproni_tasks.config import TemplateError, expand_runtimevars
from caproni_tasks.config.expand import Reference, expand_variables, scan


def test_scan_splits_literals_and_references() -> None:
    assert list(scan("a ${X} b $${Y} ${runtimevar:Z}$")) == [
        "a ",
        Reference("", "X", 2, 4),
        " b ${Y} ",
        Reference("runtimevar", "Z", 15, 15),
        "$",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("echo ${X", "unterminated"),
        ("echo ${}", "invalid reference"),
        ("echo ${1X}", "invalid reference"),
        ("echo ${env:HOME}", "unknown reference"),
        ("echo ${runtimevar:}", "invalid reference"),
    ],
)
def test_malformed_references(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        list(scan(text))
    assert caught.value.offset == 5


def test_variables_expand_and_runtimevars_stay() -> None:
    template, runtime, unknown = expand_variables(
        "serve --port ${PORT} --token ${runtimevar:TOKEN} --cost $$5 $HOME",
        {"PORT": "8080"},
    )
    assert template == "serve --port 8080 --token ${runtimevar:TOKEN} --cost $5 $HOME"
    assert [r.name for r in runtime] == ["TOKEN"]
    assert unknown == []
    assert expand_runtimevars(template, {"TOKEN": "s3cret"}) == (
        "serve --port 8080 --token s3cret --cost $5 $HOME"
    )


def test_dollar_dollar_before_a_brace_stays_literal_through_both_stages() -> None:
    template, runtime, _ = expand_variables("echo $${HOME} $$$$", {})
    assert runtime == []
    assert expand_runtimevars(template, {}) == "echo ${HOME} $$"


def test_a_variable_value_is_never_expanded_again() -> None:
    template, runtime, _ = expand_variables("x=${A}", {"A": "${runtimevar:R} $$"})
    assert runtime == []
    assert expand_runtimevars(template, {"R": "no"}) == "x=${runtimevar:R} $$"


def test_unknown_variables_are_all_returned() -> None:
    _, _, unknown = expand_variables("${A} ${B} ${A}", {"B": "b"})
    assert [(r.name, r.offset) for r in unknown] == [("A", 0), ("A", 10)]


def test_missing_runtime_value_and_leftover_variable_raise() -> None:
    with pytest.raises(KeyError):
        expand_runtimevars("${runtimevar:R}", {})
    with pytest.raises(TemplateError, match="not a runtime variable reference"):
        expand_runtimevars("${A}", {})


@given(st.text(), st.text())
def test_any_variable_value_survives_both_stages(value: str, runtime: str) -> None:
    template, refs, _ = expand_variables("${A}${runtimevar:R}${A}", {"A": value})
    assert [r.name for r in refs] == ["R"]
    assert expand_runtimevars(template, {"R": runtime}) == value + runtime + value


@given(st.text(alphabet=st.sampled_from("ab ${}:$_")))
def test_expansion_never_fails_unexpectedly(text: str) -> None:
    try:
        template, _, unknown = expand_variables(text, {"a": "$"})
    except TemplateError:
        return
    if not unknown:
        expand_runtimevars(template, {name: "v" for name in ("a", "b", "_")})
