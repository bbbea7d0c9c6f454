"""The ``${...}`` reference language of commands and env values.

One tokenizer serves both moments a value is expanded, so they can never disagree:

- at load time, ``${NAME}`` is replaced by ``variables[NAME]`` and
  ``${runtimevar:NAME}`` is kept; the result is a *template*;
- at run time, `expand_runtimevars` replaces ``${runtimevar:NAME}`` with the
  variable's current value and turns ``$$`` into ``$``.

In both, ``$$`` is a literal ``$`` and a ``$`` not followed by ``{`` or ``$`` is
literal too (so ``$HOME`` reaches the shell untouched). Templates keep ``$$`` where a
literal ``$`` would otherwise start a reference, so a value that came from
``variables`` is never expanded twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "NAME_PATTERN",
    "Reference",
    "TemplateError",
    "expand_runtimevars",
    "expand_variables",
    "scan",
]

#: What ``NAME`` may be in ``${NAME}`` and ``${runtimevar:NAME}``.
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = re.compile(NAME_PATTERN)
RUNTIMEVAR = "runtimevar"


class TemplateError(ValueError):
    """A malformed ``${...}``; ``offset`` is its index in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Reference:
    """``${NAME}`` (kind ``""``) or ``${runtimevar:NAME}`` at ``offset`` in the text."""

    kind: str
    name: str
    offset: int
    length: int

    @property
    def text(self) -> str:
        inner = f"{self.kind}:{self.name}" if self.kind else self.name
        return "${" + inner + "}"


Token = str | Reference


def scan(text: str) -> Iterator[Token]:
    """Literal text (``$$`` already unescaped) and references, in order.

    Raises `TemplateError` for an unterminated ``${``, an empty or malformed name, or
    an unknown reference kind.
    """
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:dollar])
        nxt = text[dollar + 1] if dollar + 1 < n else ""
        if nxt == "$":
            literal.append("$")
            i = dollar + 2
        elif nxt == "{":
            close = text.find("}", dollar + 2)
            if close < 0:
                raise TemplateError(
                    "unterminated '${': close it with '}', or write '$$' for a literal '$'",
                    dollar,
                )
            if literal:
                yield "".join(literal)
                literal = []
            yield _reference(text[dollar + 2 : close], dollar, close + 1 - dollar)
            i = close + 1
        else:
            literal.append("$")
            i = dollar + 1
    if literal and any(literal):
        yield "".join(literal)


def _reference(inner: str, offset: int, length: int) -> Reference:
    kind, sep, name = inner.partition(":")
    if not sep:
        kind, name = "", inner
    elif kind != RUNTIMEVAR:
        raise TemplateError(
            f"unknown reference '${{{inner}}}': use ${{NAME}} for a variable or "
            "${runtimevar:NAME} for a runtime variable ('$$' is a literal '$')",
            offset,
        )
    if not _NAME.fullmatch(name):
        what = "a runtime variable" if kind else "a variable"
        raise TemplateError(
            f"invalid reference '${{{inner}}}': {what} name is letters, digits and '_', "
            "not starting with a digit ('$$' is a literal '$')",
            offset,
        )
    return Reference(kind, name, offset, length)


def _escape(literal: str, followed_by_reference: bool) -> str:
    """Double each ``$`` that would otherwise start a reference or an escape."""
    probe = literal + ("$" if followed_by_reference else "")
    escaped = re.sub(r"\$(?=[{$])", "$$", probe)
    return escaped[:-1] if followed_by_reference else escaped


def expand_variables(
    text: str, variables: Mapping[str, str]
) -> tuple[str, list[Reference], list[Reference]]:
    """Load-time expansion: ``(template, runtimevar references, unknown variables)``.

    ``${NAME}`` becomes ``variables[NAME]`` (kept literally, whatever it contains);
    ``${runtimevar:NAME}`` stays for `expand_runtimevars`. Unknown variable references
    are returned, not raised, so every one of them can be reported.
    """
    tokens = list(scan(text))
    parts: list[str] = []
    runtimevars: list[Reference] = []
    unknown: list[Reference] = []
    pending: list[str] = []

    def flush(before_reference: bool) -> None:
        if pending:
            parts.append(_escape("".join(pending), before_reference))
            pending.clear()

    for token in tokens:
        if isinstance(token, str):
            pending.append(token)
        elif token.kind == RUNTIMEVAR:
            flush(True)
            parts.append(token.text)
            runtimevars.append(token)
        elif token.name in variables:
            pending.append(variables[token.name])
        else:
            unknown.append(token)
            pending.append(token.text)
    flush(False)
    return "".join(parts), runtimevars, unknown


def expand_runtimevars(text: str, values: Mapping[str, str]) -> str:
    """Run-time expansion of a template from the loaded config.

    ``${runtimevar:NAME}`` becomes ``values[NAME]`` (inserted as is: quote it in the
    command if the shell must see one word) and ``$$`` becomes ``$``. Raises `KeyError`
    for a runtime variable without a value and `TemplateError` for a malformed
    template or a ``${NAME}`` left in it.
    """
    out: list[str] = []
    for token in scan(text):
        if isinstance(token, str):
            out.append(token)
        elif token.kind == RUNTIMEVAR:
            if token.name not in values:
                raise KeyError(token.name)
            out.append(values[token.name])
        else:
            raise TemplateError(
                f"'{token.text}' is not a runtime variable reference; variables are "
                "expanded when the config is loaded",
                token.offset,
            )
    return "".join(out)
