"""Decoders (bytes, string, jsonmap/json, typed JSON) and Go-style durations."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from caproni_tasks.runtimevar import (
    BYTES,
    JSONMAP,
    STRING,
    Decoder,
    ErrorCode,
    VariableError,
    decoder_by_name,
    decoder_names,
    json_decoder,
    parse_duration,
    register_decoder,
)


def decode_error(decoder: Decoder[Any], data: bytes) -> VariableError:
    with pytest.raises(VariableError) as info:
        decoder.decode(data)
    assert info.value.code is ErrorCode.UNKNOWN
    assert info.value.__cause__ is not None
    return info.value


def test_bytes_and_string_accept_empty_content() -> None:
    assert BYTES.decode(b"") == b""
    assert BYTES.decode(b"\x00\xff") == b"\x00\xff"
    assert STRING.decode(b"") == ""
    assert STRING.decode("héllo".encode()) == "héllo"


def test_string_rejects_invalid_utf8_without_quoting_it() -> None:
    err = decode_error(STRING, b"ok\xffsecret")
    assert "UTF-8" in str(err) and "secret" not in str(err)


def test_jsonmap() -> None:
    assert JSONMAP.decode(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert "empty" in str(decode_error(JSONMAP, b""))
    assert "not an object" in str(decode_error(JSONMAP, b"[1, 2]"))
    assert "Expecting" in str(decode_error(JSONMAP, b"{nope"))
    assert isinstance(decode_error(JSONMAP, b"{nope").__cause__, json.JSONDecodeError)
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        assert "not valid JSON" in str(decode_error(JSONMAP, b'{"a": ' + constant + b"}"))


def test_decoder_by_name() -> None:
    assert decoder_by_name("bytes") is BYTES
    assert decoder_by_name("string") is STRING
    assert decoder_by_name("jsonmap") is JSONMAP
    assert decoder_by_name("json") is JSONMAP
    with pytest.raises(VariableError) as info:
        decoder_by_name("yamlish")
    assert str(info.value) == 'unsupported decoder "yamlish"'
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert {"bytes", "string", "jsonmap", "json"} <= set(decoder_names())


def test_register_decoder() -> None:
    register_decoder("upper-test", Decoder("upper-test", lambda b: b.decode().upper()))
    assert decoder_by_name("upper-test").decode(b"ab") == "AB"
    with pytest.raises(ValueError, match="already registered"):
        register_decoder("json", JSONMAP)
    with pytest.raises(ValueError, match="invalid decoder name"):
        register_decoder("a b", JSONMAP)


@dataclass(frozen=True)
class Port:
    number: int
    protocol: Literal["tcp", "udp"] = "tcp"


@dataclass
class Server:
    name: str
    ports: list[Port]
    weight: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    backup: Server | None = None


def test_typed_json_dataclass_and_lists() -> None:
    decoder = json_decoder(list[Server])
    assert decoder.name == "json:list[Server]"
    value = decoder.decode(
        b'[{"name": "a", "ports": [{"number": 80}], "weight": 2,'
        b' "backup": {"name": "b", "ports": []}}]'
    )
    assert value == [
        Server("a", [Port(80)], weight=2.0, backup=Server("b", [])),
    ]
    assert isinstance(value[0].weight, float)
    assert json_decoder(Port).decode(b'{"number": 53, "protocol": "udp"}') == Port(53, "udp")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"name": "a", "ports": [], "colour": 1}]', 'unknown field "colour" in Server'),
        (b'[{"ports": []}]', 'missing field "name" of Server'),
        (
            b'[{"name": "a", "ports": [{"number": "80"}]}]',
            "$[0].ports[0].number: expected an integer, got a string",
        ),
        (b'[{"name": "a", "ports": [{"number": true}]}]', "expected an integer, got a boolean"),
        (
            b'[{"name": "a", "ports": [{"number": 1, "protocol": "sctp"}]}]',
            "expected one of 'tcp', 'udp'",
        ),
        (b'{"name": "a"}', "$: expected an array, got an object"),
        (b'[{"name": "a", "ports": [], "weight": "heavy"}]', "$[0].weight: expected a number"),
        (b'[{"name": "a", "ports": [], "tags": {"k": 1}}]', "$[0].tags.k: expected a string"),
        (b"", "empty content"),
        (b'[{"name": "a", "ports": [], "weight": NaN}]', "NaN is not valid JSON"),
    ],
)
def test_typed_json_errors_are_precise(data: bytes, message: str) -> None:
    err = decode_error(json_decoder(list[Server]), data)
    assert message in str(err)


def test_typed_json_basic_and_unsupported_types() -> None:
    assert json_decoder(dict[str, int]).decode(b'{"a": 1}') == {"a": 1}
    assert json_decoder(int | None).decode(b"null") is None
    assert json_decoder(tuple[int, str]).decode(b'[1, "x"]') == (1, "x")
    assert json_decoder(Any).decode(b"[1]") == [1]
    with pytest.raises(TypeError, match="unsupported type"):
        json_decoder(set[int])
    with pytest.raises(TypeError, match="dict keys must be str"):
        json_decoder(dict[int, int])


def test_typed_json_skips_non_init_fields() -> None:
    @dataclass
    class WithDerived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    assert json_decoder(WithDerived).decode(b'{"a": 1}').a == 1
    assert 'unknown field "b"' in str(decode_error(json_decoder(WithDerived), b'{"a": 1, "b": 2}'))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1m", 60),
        ("1h30m", 5400),
        ("0", 0),
        ("1.5s", 1.5),
        ("2h45m10s", 9910),
        ("10us", 1e-5),
        ("7µs", 7e-6),
        ("-1s", -1),
        ("+5s", 5),
        (".5s", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("1", "missing unit"),
        ("5d", 'unknown unit "d"'),
        ("s", "invalid"),
        ("1h x", "unknown unit"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)
