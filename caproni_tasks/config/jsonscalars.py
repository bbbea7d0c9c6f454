"""JSON Schema forms of the scalar nodes that accept what the loader accepts.

The loader reads every scalar as text (strictyaml) and lets the node parse it, so
``port: "8181"``, ``version: "2"``, ``edit_mode: yes`` and ``command: 123`` all load.
An editor reads YAML 1.2 types: the same values arrive as a string, a string, a string
and a number. Each form below accepts, for each JSON type an editor can produce, the
values whose text the node's parser accepts — so the schema and the loader agree
(``tests/test_config_schema_agreement.py`` feeds both the same values).
"""

from __future__ import annotations

import re
from typing import Any

from caproni_tasks.config.spec import (
    DURATION_NUMBER,
    DURATION_PATTERN,
    Boolean,
    Integer,
    Node,
    Text,
    Version,
)

__all__ = ["integer_text_pattern", "scalar_shape"]

_SPACE = r"[ \t]*"


def _ci(word: str) -> str:
    """``word`` as a case-insensitive regex (ECMA regexes have no inline flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _same_length(low: str, high: str) -> list[str]:
    """Alternatives matching the numbers from ``low`` to ``high`` (same digit count)."""
    if low == high:
        return [low]
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [low[0] + rest for rest in _same_length(low[1:], high[1:])]
    width = len(low) - 1
    parts = [low[0] + rest for rest in _same_length(low[1:], "9" * width)]
    if int(low[0]) + 1 <= int(high[0]) - 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + "[0-9]" * width)
    parts += [high[0] + rest for rest in _same_length("0" * width, high[1:])]
    return parts


def _range(low: int, high: int | None) -> str:
    """A regex (no anchors) of the decimal numbers ``low``..``high`` without leading zeros."""
    if high is None:
        digits = len(str(low))
        top = 10**digits - 1
        return f"(?:{_range(low, top)}|[1-9][0-9]{{{digits},}})"
    parts: list[str] = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = min(high, 10**length - 1)
        if start <= end:
            parts += _same_length(str(start), str(end))
    return "(?:" + "|".join(parts) + ")"


def integer_text_pattern(minimum: int | None, maximum: int | None) -> str:
    """The texts `Integer.parse` accepts: optional sign, digits (leading zeros allowed)."""
    if minimum is None or minimum < 0 or (maximum is not None and maximum < 0):
        return rf"^{_SPACE}[-+]?[0-9]+{_SPACE}$"
    zero = "|-0+" if minimum == 0 else ""
    return rf"^{_SPACE}(?:\+?0*{_range(minimum, maximum)}{zero}){_SPACE}$"


def _texts_of_numbers(pattern: str) -> dict[str, Any] | None:
    """Numbers whose text a pattern accepts (an entry name written as ``123``)."""
    if not re.fullmatch(pattern, "1"):
        return None
    kind = "number" if re.fullmatch(pattern, "1.5") else "integer"
    shape: dict[str, Any] = {"type": kind}
    if not re.fullmatch(pattern, "-1"):
        shape["minimum"] = 0
    return shape


def scalar_shape(node: Node) -> dict[str, Any] | None:
    """The JSON Schema of a scalar node, or None for nodes shaped elsewhere."""
    if isinstance(node, Version):
        return {"enum": [node.value, str(node.value)]}
    if isinstance(node, Integer):
        number: dict[str, Any] = {"type": "integer"}
        if node.minimum is not None:
            number["minimum"] = node.minimum
        if node.maximum is not None:
            number["maximum"] = node.maximum
        text = {"type": "string", "pattern": integer_text_pattern(node.minimum, node.maximum)}
        return {"anyOf": [number, text]}
    if isinstance(node, Boolean):
        words = "|".join(_ci(w) for w in ("true", "yes", "on", "false", "no", "off"))
        return {
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "pattern": rf"^{_SPACE}(?:{words}){_SPACE}$"},
            ]
        }
    if isinstance(node, Text) and not node.any_scalar:
        string: dict[str, Any] = {"type": "string"}
        if node.pattern:
            string["pattern"] = (
                node.pattern if node.pattern.startswith("^") else (f"^(?:{node.pattern})$")
            )
            numbers = _texts_of_numbers(node.pattern)
            alternatives = [string]
            if numbers is not None:
                alternatives.append(numbers)
            if re.fullmatch(node.pattern, "true") and re.fullmatch(node.pattern, "false"):
                alternatives.append({"type": "boolean"})
            return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
        if node.nonempty:
            string["pattern"] = r"\S"
        return {"anyOf": [string, {"type": ["number", "boolean"]}]}
    return None


def duration_shape() -> dict[str, Any]:
    """Seconds as a number ≥ 0, or text: a number or a Go-style duration."""
    return {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {
                "type": "string",
                "pattern": rf"^{_SPACE}(?:{DURATION_NUMBER}|{DURATION_PATTERN[1:-1]}){_SPACE}$",
            },
        ]
    }
