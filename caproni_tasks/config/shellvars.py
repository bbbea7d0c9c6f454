"""Shell-style expansion of ``variables:`` values against the environment, at load.

``${VAR}`` (empty when unset), ``${VAR:-default}`` / ``${VAR-default}`` (default when
unset or empty / unset), ``${VAR:?message}`` / ``${VAR?message}`` (an error carrying
the message), ``${VAR:+alt}`` / ``${VAR+alt}`` (alt when set), nested in the words
(``${A:-${B:?set A or B}}``), and ``$$`` for a literal ``$``. A ``$`` not followed by
``{`` or ``$`` is literal. Variables do not refer to each other: only the environment
is read. `EnvView` records which names were read, so a cached config can tell when the
environment it was built from has changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from caproni_tasks.config.expand import NAME_PATTERN

__all__ = ["EnvView", "ShellVarError", "expand_shell"]

_NAME = re.compile(NAME_PATTERN)
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class ShellVarError(ValueError):
    """A malformed reference or a ``:?`` failure; ``offset`` is where its ``${`` starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass
class EnvView(Mapping[str, str]):
    """The environment, remembering each name looked up and what it was (None: unset)."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    read: dict[str, str | None] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        value = self.environ.get(name)
        self.read[name] = value
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


def expand_shell(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every ``${...}`` replaced from ``env``; raises `ShellVarError`."""
    value, end = _expand(text, 0, env, nested=False)
    assert end == len(text)
    return value


def _expand(text: str, i: int, env: Mapping[str, str], *, nested: bool) -> tuple[str, int]:
    """Expand from ``i`` to the end, or (``nested``) to the ``}`` closing a word."""
    out: list[str] = []
    n = len(text)
    while i < n:
        char = text[i]
        if nested and char == "}":
            return "".join(out), i
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            value, i = _reference(text, i, env)
            out.append(value)
        else:
            out.append("$")
            i += 1
    if nested:
        raise ShellVarError("unterminated '${': close it with '}'", i)
    return "".join(out), i


def _reference(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    """``${...}`` at ``start`` → (value, index after its ``}``)."""
    found = _NAME.match(text, start + 2)
    if found is None:
        end = text.find("}", start)
        inner = text[start + 2 : end] if end >= 0 else text[start + 2 :]
        raise ShellVarError(
            f"invalid reference '${{{inner}}}': a name of letters, digits and '_', not "
            "starting with a digit, then '}', ':-default', ':?message' or ':+alt' "
            "('$$' is a literal '$')",
            start,
        )
    name = found.group()
    i = found.end()
    if i >= len(text):
        raise ShellVarError("unterminated '${': close it with '}'", start)
    if text[i] == "}":
        return env.get(name, ""), i + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
    if operator is None:
        end = text.find("}", i)
        shown = text[start : end + 1] if end >= 0 else text[start:]
        raise ShellVarError(
            f"unsupported reference '{shown}': after the name write '}}', ':-default', "
            "':?message' or ':+alt' (variables read the environment only)",
            start,
        )
    word_start = i + len(operator)
    # The word is expanded only when it is used (as in the shell), but always checked.
    probe = _Probe()
    _, end = _expand(text, word_start, probe, nested=True)
    value = env.get(name)
    unset = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        if unset:
            word, _ = _expand(text, word_start, env, nested=True)
            return word, end + 1
        return value or "", end + 1
    if operator.endswith("?"):
        if unset:
            message, _ = _expand(text, word_start, env, nested=True)
            what = "is not set" if value is None else "is empty"
            raise ShellVarError(f"{name} {what}: {message}" if message else f"{name} {what}", start)
        return value or "", end + 1
    if unset:
        return "", end + 1
    word, _ = _expand(text, word_start, env, nested=True)
    return word, end + 1


class _Probe(Mapping[str, str]):
    """An environment where every name is set: checks a word's syntax without effects."""

    def __getitem__(self, name: str) -> str:
        return "x"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
