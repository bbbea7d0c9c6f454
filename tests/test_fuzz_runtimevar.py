"""Fuzz probe: runtime-variable URLs through `check_variable_url` and `open_variable`.

Only `VariableError` may come out of either (INVALID_ARGUMENT for a bad URL), a URL
that checks must also open, and an opened variable reports its state without raising
anything but `VariableError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_mutations import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from caproni_tasks.runtimevar import ErrorCode, VariableError, check_variable_url, open_variable
from caproni_tasks.runtimevar.durations import parse_duration

SETTINGS = fuzz_settings(150)

numbers = st.one_of(
    st.integers(0, 10**30).map(str),
    st.sampled_from(["0", "1", "1.5", ".5", "1.", "9" * 400, "00", "-1", "+2", ""]),
)
units = st.sampled_from(["ns", "us", "\u00b5s", "ms", "s", "m", "h", "", "d", "x", "S"])
durations = st.one_of(
    st.lists(st.tuples(numbers, units).map("".join), min_size=1, max_size=3).map("".join),
    st.sampled_from(["10ms", "1s", "24h", "0", "1ns", "25h", "1h30m"]),
    st.text(max_size=8),
)
path_parts = st.one_of(
    st.sampled_from(["a", "v.txt", "%00", "%ff", "%2F", "%20", "..", ".", "%", "%zz", "\x00"]),
    st.text(max_size=6),
)
paths = st.lists(path_parts, max_size=4).map(lambda parts: "/" + "/".join(parts))
params = st.one_of(
    st.tuples(st.just("wait"), durations),
    st.tuples(
        st.just("decoder"),
        st.sampled_from(["bytes", "string", "jsonmap", "json", "yaml", "", "BYTES", "%00"]),
    ),
    st.tuples(st.text(max_size=5), st.text(max_size=5)),
)
queries = st.lists(params, max_size=2).map(
    lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else ""
)
urls = st.one_of(
    st.builds(
        lambda scheme, sep, host, path, query: f"{scheme}{sep}{host}{path}{query}",
        # Mostly well-formed, so the probe gets past the scheme to paths and options.
        st.sampled_from(["file"] * 6 + ["FILE", "runtimevar+file", "nope", "", "f i"]),
        st.sampled_from(["://"] * 6 + [":", ":/", "//"]),
        st.sampled_from(["."] * 4 + ["", "", "localhost", "host", "[::1", ".:x", "%00"]),
        paths,
        queries,
    ),
    st.text(max_size=40),
)


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        (Path(name) / "a").write_text("value")
        yield Path(name)


@SETTINGS
@given(urls)
def test_urls_check_and_open_with_only_variable_errors(base_dir: Path, url: str) -> None:
    try:
        check_variable_url(url, base_dir=base_dir)
    except VariableError as exc:
        assert exc.code is ErrorCode.INVALID_ARGUMENT
        assert str(exc).startswith("open variable ")
        with pytest.raises(VariableError):
            open_variable(url, base_dir=base_dir).close()
        return
    variable = open_variable(url, base_dir=base_dir)
    try:
        try:
            variable.latest(timeout=0)
        except VariableError as exc:
            assert str(exc)
    finally:
        variable.close()


@SETTINGS
@given(durations)
def test_durations_parse_to_finite_seconds_or_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc).startswith("time: ")
        return
    assert abs(seconds) <= 2**63 * 1e-9
