"""The spec as a JSON Schema (draft 2020-12) for editors (yaml-language-server).

Generated from the same nodes the loader validates with. Editors read YAML 1.2 types,
so where the loader takes any scalar as text (env values, variables) the schema also
allows numbers and booleans. The loader stays the authority for what JSON Schema
cannot say (references between sections, ``${NAME}``, dependency cycles).
"""

from __future__ import annotations

import json
from typing import Any

from caproni_tasks.config.spec import (
    DURATION_PATTERN,
    Boolean,
    Choice,
    Data,
    Duration,
    Field,
    HttpUrl,
    Integer,
    ListOf,
    MapOf,
    Node,
    OneOrList,
    Pattern,
    Reloader,
    SignalName,
    Struct,
    Text,
    Version,
)

__all__ = ["json_schema", "json_schema_text"]


def json_schema() -> dict[str, Any]:
    from caproni_tasks.config.schema import ROOT

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "caproni.yaml",
    }
    schema.update(_node(ROOT))
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _pattern(regex: str) -> str:
    return regex if regex.startswith("^") else f"^(?:{regex})$"


def _node(node: Node, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = description or node.description
    if text:
        out["description"] = text
    out.update(_shape(node))
    return out


def _shape(node: Node) -> dict[str, Any]:
    from caproni_tasks.config.jsonscalars import duration_shape, scalar_shape

    scalar = scalar_shape(node)
    if scalar is not None:
        return scalar
    if isinstance(node, Duration):
        return duration_shape()
    if isinstance(node, Version):
        return {"const": node.value}
    if isinstance(node, Text):
        if node.any_scalar:
            return {"type": ["string", "number", "boolean"]}
        shape: dict[str, Any] = {"type": "string"}
        if node.nonempty:
            shape["minLength"] = 1
        if node.pattern:
            shape["pattern"] = _pattern(node.pattern)
        return shape
    if isinstance(node, Integer):
        shape = {"type": "integer"}
        if node.minimum is not None:
            shape["minimum"] = node.minimum
        if node.maximum is not None:
            shape["maximum"] = node.maximum
        return shape
    if isinstance(node, Boolean):
        return {"type": "boolean"}
    if isinstance(node, Choice):
        return {"enum": list(node.values)}
    if isinstance(node, Duration):
        return {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ]
        }
    if isinstance(node, SignalName):
        names = SignalName.names()
        return {"type": "string", "enum": [*names, *(n.lower() for n in names)]}
    if isinstance(node, HttpUrl):
        return {"type": "string", "pattern": "^https?://[^/?#]+"}
    if isinstance(node, Pattern):
        return {"type": "string", "format": "regex"}
    if isinstance(node, Data):
        return {"type": "object"} if node.mapping else {}
    if isinstance(node, Reloader):
        return _reloader(node)
    if isinstance(node, Struct):
        shape = _struct(node.fields)
        if node.exactly_one:
            shape.update(minProperties=1, maxProperties=1)
        return shape
    if isinstance(node, MapOf):
        return {
            "type": ["object", "null"],
            "propertyNames": _shape(node.key),
            "additionalProperties": _node(node.value),
        }
    if isinstance(node, ListOf):
        return {"type": ["array", "null"], "items": _node(node.item)}
    if isinstance(node, OneOrList):
        item = _node(node.item)
        return {"anyOf": [item, {"type": "array", "items": item}]}
    raise TypeError(f"no JSON Schema form for {type(node).__name__}")


def _field(spec: Field) -> dict[str, Any]:
    out = _node(spec.node, spec.description)
    if spec.default is not None:
        out["default"] = spec.default
    return out


def _struct(fields: dict[str, Field] | Any, *, closed: bool = True) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "type": "object",
        "properties": {name: _field(spec) for name, spec in fields.items()},
    }
    required = [name for name, spec in fields.items() if spec.required]
    if required:
        shape["required"] = required
    else:
        shape["type"] = ["object", "null"]  # a blank value is an empty mapping
    if closed:
        shape["additionalProperties"] = False
    return shape


def _reloader(node: Reloader) -> dict[str, Any]:
    """Common fields, every registered kind's section, and "a section must match type"."""
    from caproni_tasks.config.kinds import known_kinds

    sections: dict[str, Node] = {
        kind.name: kind.section if kind.section is not None else Data() for kind in known_kinds()
    }
    shape = _struct(node.fields, closed=False)
    for kind, section in sections.items():
        shape["properties"][kind] = _node(section)
    rules = []
    for kind, section in sections.items():
        others = {other: False for other in sections if other != kind}
        then: dict[str, Any] = {"properties": others}
        if isinstance(section, Struct) and any(f.required for f in section.fields.values()):
            then["required"] = [kind]
        rules.append({"if": {"properties": {"type": {"const": kind}}}, "then": then})
    shape["allOf"] = rules
    return shape
