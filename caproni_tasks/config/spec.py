"""A small schema language: the one description of caproni.yaml.

`caproni_tasks.config.schema` writes the file's shape in these nodes once; it is
compiled to strictyaml validators (`caproni_tasks.config.strict`) for loading and to a
JSON Schema (`caproni_tasks.config.jsonschema`) for editors, so the two cannot drift.
Scalar nodes parse the text themselves, which keeps error messages ours.
"""

from __future__ import annotations

import math
import re
import signal
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Boolean",
    "Choice",
    "Data",
    "Duration",
    "Field",
    "HttpUrl",
    "Integer",
    "ListOf",
    "MapOf",
    "Node",
    "OneOrList",
    "Pattern",
    "Reloader",
    "Scalar",
    "SignalName",
    "Struct",
    "Text",
    "Version",
    "parse_duration",
    "signal_name",
]

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Node:
    description: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class Scalar(Node):
    """A node for one scalar; `parse` turns the YAML text into the value or raises
    `ValueError` with the message the user sees."""

    #: Used in "expected …" messages when a mapping or list was written instead.
    what: ClassVar[str] = "a value"

    def parse(self, text: str) -> object:
        return text

    def describe(self) -> str:
        """What is expected, for messages about a mapping or list in its place."""
        return self.what


@dataclass(frozen=True)
class Text(Scalar):
    nonempty: bool = False
    pattern: str | None = None
    #: Said when `pattern` does not match, e.g. "letters, digits, '_' and '-'".
    pattern_hint: str = ""
    #: Numbers and booleans are fine too (env values, variables): matters for JSON Schema.
    any_scalar: bool = False
    what: ClassVar[str] = "a string"

    def parse(self, text: str) -> object:
        if self.nonempty and not text.strip():
            raise ValueError("expected a non-empty string; found an empty value")
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError(f"expected {self.pattern_hint or self.pattern}; found {text!r}")
        return text


@dataclass(frozen=True)
class Integer(Scalar):
    minimum: int | None = None
    maximum: int | None = None
    what: ClassVar[str] = "an integer"

    def parse(self, text: str) -> object:
        if not re.fullmatch(r"[-+]?[0-9]+", text.strip()):
            raise ValueError(f"expected {self._range()}; found {text!r}")
        value = int(text)
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise ValueError(f"expected {self._range()}; found {value}")
        return value

    def describe(self) -> str:
        return self._range()

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"an integer ≥ {self.minimum}"
        return "an integer"


@dataclass(frozen=True)
class Version(Scalar):
    """``version: 2`` exactly: the only format this loader reads."""

    value: int = 2
    what: ClassVar[str] = "the number 2"

    def parse(self, text: str) -> object:
        if text.strip() != str(self.value):
            raise ValueError(
                f"expected version {self.value} (the Caproni v{self.value} format); found {text!r}"
            )
        return self.value


_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


@dataclass(frozen=True)
class Boolean(Scalar):
    what: ClassVar[str] = "true or false"

    def parse(self, text: str) -> object:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false; found {text!r}")


@dataclass(frozen=True)
class Choice(Scalar):
    values: tuple[str, ...] = ()
    what: ClassVar[str] = "one of a list of words"

    def describe(self) -> str:
        return f"one of {', '.join(self.values)}"

    def parse(self, text: str) -> object:
        if text not in self.values:
            raise ValueError(f"expected one of {', '.join(self.values)}; found {text!r}")
        return text


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
#: Go-style durations as JSON Schema (ECMA) and Python both read it.
DURATION_PATTERN = r"^([0-9]*\.?[0-9]+(ns|us|µs|ms|s|m|h))+$"
#: Seconds as a plain number (the JSON Schema uses the same expression).
DURATION_NUMBER = r"\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"


def parse_duration(text: str) -> float:
    """Seconds from a number (``10``, ``2.5``) or a Go-style duration (``1m30s``)."""
    stripped = text.strip()
    if re.fullmatch("-" + DURATION_NUMBER[3:], stripped):
        raise ValueError(f"expected a duration ≥ 0; found {text!r}")
    try:
        if not re.fullmatch(DURATION_NUMBER, stripped):
            raise ValueError(stripped)
        seconds = float(stripped)
    except ValueError:
        if not re.fullmatch(DURATION_PATTERN[1:-1], stripped):
            raise ValueError(
                "expected seconds (e.g. 10 or 2.5) or a duration such as 500ms, 10s, 1m30s; "
                f"found {text!r}"
            ) from None
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(stripped)
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a duration ≥ 0; found {text!r}")
    return seconds


@dataclass(frozen=True)
class Duration(Scalar):
    what: ClassVar[str] = "a duration"

    def parse(self, text: str) -> object:
        return parse_duration(text)


def _signal_names() -> tuple[str, ...]:
    return tuple(sorted(s.name for s in signal.Signals))


def signal_name(text: str) -> str:
    """``TERM``, ``sigterm``, ``SIGTERM`` → ``SIGTERM``; unknown names raise."""
    name = text.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _signal_names() and not name.startswith("SIG_"):
        return name
    raise ValueError(f"expected a signal name such as TERM, INT, HUP or QUIT; found {text!r}")


@dataclass(frozen=True)
class SignalName(Scalar):
    what: ClassVar[str] = "a signal name"

    def parse(self, text: str) -> object:
        return signal_name(text)

    @staticmethod
    def names() -> tuple[str, ...]:
        """Portable names (Linux and macOS), for the JSON Schema's completion list."""
        return tuple(f"SIG{name}" for name in PORTABLE_SIGNALS) + PORTABLE_SIGNALS


#: POSIX signals every supported platform has; the loader accepts any the host knows.
PORTABLE_SIGNALS: tuple[str, ...] = (
    *("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV"),
    *("USR2", "PIPE", "ALRM", "TERM", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU"),
    *("URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "SYS"),
)


@dataclass(frozen=True)
class HttpUrl(Scalar):
    what: ClassVar[str] = "an http(s) URL"

    def parse(self, text: str) -> object:
        url = text.strip()
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host; found {text!r}")
        try:
            parsed.port  # noqa: B018 - raises for a port out of range
        except ValueError:
            raise ValueError(f"invalid port in URL {text!r}") from None
        return url


@dataclass(frozen=True)
class Pattern(Scalar):
    """A Python regular expression (checked by compiling it)."""

    what: ClassVar[str] = "a regular expression"

    def parse(self, text: str) -> object:
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {text!r}: {exc}") from None
        return text


@dataclass(frozen=True)
class Data(Node):
    """Free-form YAML kept as plain data (settings passed on as they are)."""

    mapping: bool = True


@dataclass(frozen=True)
class Field:
    node: Node
    required: bool = False
    #: Shown in the JSON Schema and the docs; the loader applies it in the model.
    default: object = None
    #: Overrides the node's description where the same node serves several fields.
    description: str = ""


@dataclass(frozen=True)
class Struct(Node):
    """A mapping with known keys (others are errors)."""

    fields: Mapping[str, Field] = field(default_factory=dict)
    #: Exactly one of the keys must be given (checked by the loader after parsing).
    exactly_one: bool = False
    what: ClassVar[str] = "a mapping"


@dataclass(frozen=True)
class MapOf(Node):
    """A mapping of user-chosen names to values of one shape.

    ``isolate`` makes each entry validate on its own, so a mistake in one entry does not
    hide mistakes in its siblings.
    """

    key: Text
    value: Node
    isolate: bool = False


@dataclass(frozen=True)
class ListOf(Node):
    item: Node


@dataclass(frozen=True)
class OneOrList(Node):
    """One scalar, or a list of scalars of the same shape (``env_file: a.env`` or
    ``env_file: [a.env, b.env]``); the loader's data is the scalar or the list as
    written (an empty list is fine: none)."""

    item: Scalar


@dataclass(frozen=True)
class Reloader(Struct):
    """A reloader: common fields plus one section named after its ``type``.

    The section's node comes from the kind registry (`caproni_tasks.config.kinds`):
    every kind, built-in or third-party, describes its own section there; a kind that
    describes none takes any mapping, checked by its manager.
    """
