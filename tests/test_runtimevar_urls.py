"""URLs: the opener registry, the file scheme's rules, error wording."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from caproni_tasks.runtimevar import (
    BYTES,
    JSONMAP,
    STRING,
    ErrorCode,
    Publish,
    Snapshot,
    Variable,
    VariableError,
    VariableURL,
    check_variable_url,
    open_variable,
    parse_variable_url,
    register_opener,
    schemes,
)
from caproni_tasks.runtimevar.filevar import FileDriver


def opened(url: str, base_dir: Path | None = None) -> FileDriver:
    var = open_variable(url, base_dir=base_dir)
    try:
        driver = var._driver
        assert isinstance(driver, FileDriver)
        return driver
    finally:
        var.close()


def open_error(url: str) -> str:
    with pytest.raises(VariableError) as info:
        open_variable(url)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return str(info.value)


def test_file_scheme_is_built_in() -> None:
    assert "file" in schemes()


def test_absolute_path_default_decoder_and_wait(tmp_path: Path) -> None:
    driver = opened(f"file://{tmp_path}/v.txt")
    assert driver.path == str(tmp_path / "v.txt")
    assert driver.decoder is BYTES
    assert driver.wait == 30.0


def test_relative_path_through_dot_host_resolves_against_base_dir(tmp_path: Path) -> None:
    driver = opened("file://./conf/x.txt?decoder=string", base_dir=tmp_path)
    assert driver.path == str(tmp_path / "conf" / "x.txt")
    assert driver.decoder is STRING


def test_relative_path_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert opened("file://./x.json").path == str(tmp_path / "x.json")


def test_percent_decoding_and_localhost(tmp_path: Path) -> None:
    driver = opened(f"file://localhost{tmp_path}/my%20file%3F.json?decoder=json")
    assert driver.path == str(tmp_path / "my file?.json")
    assert driver.decoder is JSONMAP


@pytest.mark.parametrize(
    ("wait", "seconds"), [("300ms", 0.3), ("1m", 60), ("1h30m", 5400), ("0", 30.0), ("-1s", 30.0)]
)
def test_wait_durations(tmp_path: Path, wait: str, seconds: float) -> None:
    assert opened(f"file://{tmp_path}/v?wait={wait}").wait == pytest.approx(seconds)


@pytest.mark.parametrize(
    "url", ["FILE:///tmp/x", "runtimevar+file:///tmp/x", "RuntimeVar+File:///tmp/x"]
)
def test_scheme_is_case_insensitive_and_prefix_accepted(url: str) -> None:
    assert opened(url).path == "/tmp/x"


def test_empty_decoder_means_default(tmp_path: Path) -> None:
    assert opened(f"file://{tmp_path}/v?decoder=").decoder is BYTES


def test_invalid_query_parameter_wording() -> None:
    url = "file:///tmp/x?decoder=string&color=red"
    assert open_error(url) == f'open variable {url}: invalid query parameter "color"'


def test_unsupported_decoder_wording() -> None:
    url = "file:///tmp/x?decoder=yaml"
    assert open_error(url) == f'open variable {url}: unsupported decoder "yaml"'


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///tmp/x?wait=5", 'invalid wait "5": time: missing unit'),
        ("file:///tmp/x?wait=soon", 'invalid wait "soon"'),
        ("file:///tmp/x?decoder=string&decoder=bytes", 'query parameter "decoder" given 2 times'),
        ("file://server/share/x", 'file URL host must be empty or "."'),
        ("file://", "missing file path"),
        ("file://.", "missing file path"),
        ("/tmp/x", "missing scheme"),
        ("tmp/x.json", "missing scheme"),
        ("file:conf/x.json", 'expected "file://"'),
        ("FILE:/tmp/x", 'expected "FILE://"'),
        ("nope:///tmp/x", 'no opener for scheme "nope"'),
        ("file://[::1/x", "invalid URL"),
        ("file://h:xx/x", "invalid URL"),
        ("file://user@/x", 'file URL host must be empty or "."'),
        ("", "empty URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    text = open_error(url)
    assert text.startswith("open variable ")
    assert message in text


class ConstantDriver:
    def __init__(self, value: Any) -> None:
        self.value = value

    def start(self, publish: Publish) -> None:
        publish(Snapshot(self.value, datetime.now(UTC)))

    def stop(self) -> None:
        pass


def test_register_opener_for_another_scheme() -> None:
    def open_constant(url: VariableURL) -> Variable[Any]:
        return Variable(ConstantDriver(url.path.lstrip("/")), name=url.raw)

    register_opener("Constant-Test", open_constant)
    assert "constant-test" in schemes()
    with open_variable("runtimevar+CONSTANT-TEST:///hello") as var:
        assert var.latest(timeout=0).value == "hello"
        assert var.name == "runtimevar+CONSTANT-TEST:///hello"
    with pytest.raises(ValueError, match="already registered"):
        register_opener("constant-test", open_constant)
    register_opener("constant-test", open_constant, replace=True)
    with pytest.raises(ValueError, match="invalid URL scheme"):
        register_opener("1x", open_constant)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://./x?decoder=wat", 'unsupported decoder "wat"'),
        ("file://./x?every=1s", 'invalid query parameter "every"'),
        ("file://./x?wait=soon", 'invalid wait "soon"'),
        ("file://host/x", "file URL host must be empty"),
        ("nope://x", 'no opener for scheme "nope"'),
    ],
)
def test_check_variable_url_reports_what_open_would(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(VariableError, match=message) as checked:
        check_variable_url(url, base_dir=tmp_path)
    with pytest.raises(VariableError) as opening:
        open_variable(url, base_dir=tmp_path)
    assert str(checked.value) == str(opening.value)
    assert checked.value.code is ErrorCode.INVALID_ARGUMENT


def test_check_variable_url_opens_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caproni_tasks.runtimevar import urls

    # A private copy of the registry, so this scheme does not leak into other tests.
    monkeypatch.setattr(urls, "_OPENERS", dict(urls._OPENERS))
    monkeypatch.setattr(urls, "_CHECKERS", dict(urls._CHECKERS))
    check_variable_url("file://./missing/value.txt?decoder=string&wait=2s", base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    calls: list[str] = []

    def open_checked(url: VariableURL) -> Variable[Any]:
        raise AssertionError("check must not open")

    def check(url: VariableURL) -> None:
        calls.append(url.path)

    register_opener("checked-test", open_checked, replace=True, check=check)
    check_variable_url("checked-test:///p")
    assert calls == ["/p"]


def test_parse_variable_url_fields(tmp_path: Path) -> None:
    parsed = parse_variable_url("runtimevar+file://./a%20b?decoder=json&wait=1s", base_dir=tmp_path)
    assert (parsed.scheme, parsed.host, parsed.path) == ("file", ".", "/a b")
    assert dict(parsed.query) == {"decoder": ["json"], "wait": ["1s"]}
    assert parsed.base_dir == tmp_path
    assert parse_variable_url("env://HOME_Dir").host == "HOME_Dir"  # case kept for openers
