"""Read JSON that someone else wrote (package manifests, indexes, state records) safely.

The standard parser recurses once per nesting level: a small document of ten thousand
``[`` raises `RecursionError`, and a document can be any shape. Every reader of
untrusted or possibly corrupt JSON goes through `load_object`, which turns all of that
into one `JsonShapeError` naming the source, and checks the document's nesting depth
before parsing so a hostile file costs one linear scan.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "JsonShapeError", "json_type_name", "load_object"]

#: No file of ours nests deeper than a handful of levels; this leaves ample room.
MAX_DEPTH = 64


class JsonShapeError(ValueError):
    """Not JSON, or not the expected shape; the message names the source."""


#: A string literal (skipped whole) or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _depth_problem(text: str, limit: int) -> str | None:
    """Report nesting deeper than ``limit`` (brackets outside strings)."""
    if text.count("[") + text.count("{") <= limit:
        return None  # the common case: too few brackets to nest that deep
    depth = 0
    for match in _TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return f"nested deeper than {limit} levels"
        elif char in "]}":
            depth -= 1
    return None


def load_object(raw: bytes | str, source: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object, or raise `JsonShapeError` ("<source>: <why>")."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise JsonShapeError(f"{source}: not valid UTF-8: {error}") from None
    problem = _depth_problem(text, max_depth)
    if problem is not None:
        raise JsonShapeError(f"{source}: not a valid file: {problem}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise JsonShapeError(f"{source}: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise JsonShapeError(f"{source}: expected a JSON object, found {json_type_name(data)}")
    return data


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages that omit the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
