"""Decoders: how a variable's bytes become a value.

The names are those of Go Cloud (``bytes``, ``string``, ``jsonmap``) plus ``json`` as an
alias of ``jsonmap``. Decode failures become `VariableError` with code UNKNOWN; their
messages never quote the content (values may be secrets).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from caproni_tasks.runtimevar.errors import ErrorCode, VariableError, make_error
from caproni_tasks.runtimevar.typed_json import converter_for, json_type_name, type_label

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Decoder(Generic[T_co]):
    """A named function from bytes to a value; it raises on content it cannot decode."""

    name: str
    func: Callable[[bytes], T_co]

    def decode(self, data: bytes) -> T_co:
        """Decode *data*, raising `VariableError` (UNKNOWN) with the reason as ``__cause__``."""
        try:
            return self.func(data)
        except VariableError:
            raise
        except Exception as exc:  # any decoder failure is a bad value, not a crash
            raise make_error(ErrorCode.UNKNOWN, f"decode as {self.name}: {exc}", exc) from exc


def _identity(data: bytes) -> bytes:
    return data


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start})") from exc


def _json_object(data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise ValueError("empty content is not a JSON object")
    value = strict_json(data)
    if not isinstance(value, dict):
        raise ValueError(f"JSON value is {json_type_name(value)}, not an object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_json(data: bytes) -> Any:
    """Standard JSON only: Python's extension ``NaN``/``Infinity`` is refused, as Go does
    (and as every consumer that re-serialises the value expects)."""
    return json.loads(data, parse_constant=_no_constant)


#: The raw bytes; an empty file is the good value ``b""``.
BYTES: Decoder[bytes] = Decoder("bytes", _identity)
#: UTF-8 text; an empty file is the good value ``""``.
STRING: Decoder[str] = Decoder("string", _utf8)
#: A JSON object as a dict; empty content, invalid JSON or a non-object is an error.
JSONMAP: Decoder[dict[str, Any]] = Decoder("jsonmap", _json_object)

_REGISTRY: dict[str, Decoder[Any]] = {"bytes": BYTES, "string": STRING, "jsonmap": JSONMAP}
_ALIASES: dict[str, str] = {"json": "jsonmap"}
_LOCK = threading.Lock()


def decoder_by_name(name: str) -> Decoder[Any]:
    """The decoder registered as *name* (``bytes``, ``string``, ``jsonmap``/``json``, …)."""
    with _LOCK:
        found = _REGISTRY.get(_ALIASES.get(name, name))
    if found is None:
        raise VariableError(ErrorCode.INVALID_ARGUMENT, f'unsupported decoder "{name}"')
    return found


def decoder_names() -> list[str]:
    """Every name `decoder_by_name` accepts, aliases included."""
    with _LOCK:
        return sorted([*_REGISTRY, *_ALIASES])


def register_decoder(name: str, decoder: Decoder[Any]) -> None:
    """Make *decoder* available by *name* in URLs (``?decoder=name``); names are unique."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"invalid decoder name {name!r}: use letters, digits, '-' and '_'")
    with _LOCK:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"decoder {name!r} is already registered")
        _REGISTRY[name] = decoder


def json_decoder(target: Any, *, name: str | None = None) -> Decoder[Any]:
    """A decoder of JSON into *target*: a dataclass, ``list[SomeDataclass]``, ``dict[str, X]``,
    basic types and ``X | None``; field names and types are checked with clear messages."""
    convert = converter_for(target)

    def decode(data: bytes) -> Any:
        if not data.strip():
            raise ValueError("empty content is not JSON")
        return convert(strict_json(data), "$")

    return Decoder(name or f"json:{type_label(target)}", decode)
