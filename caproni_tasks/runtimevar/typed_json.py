"""Checked conversion of parsed JSON into typed Python values (dataclasses, lists, …).

Converters are built once per decoder so unsupported annotations fail at
``json_decoder(...)`` time, not on the first file change. Errors name the JSON path
(``$.servers[2].port``) and the expected and actual JSON types, never the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from caproni_tasks.jsonfile import json_type_name

__all__ = ["JSONShapeError", "converter_for", "json_type_name", "type_label"]

Converter = Callable[[Any, str], Any]


class JSONShapeError(ValueError):
    """JSON that parsed but does not have the shape of the target type."""


def type_label(target: Any) -> str:
    """A short human name for a type annotation (``list[Server]``)."""
    if isinstance(target, type) and not typing.get_args(target):
        return target.__name__
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return base + "[" + ", ".join("..." if a is Ellipsis else type_label(a) for a in args) + "]"
    return getattr(target, "__name__", repr(target))


def converter_for(target: Any) -> Converter:
    """A function ``(parsed_json, path) -> value`` for *target*; TypeError if unsupported."""
    return _Builder().build(target)


class _Builder:
    def __init__(self) -> None:
        # Dataclasses under construction, so recursive types refer to themselves lazily.
        self._dataclasses: dict[type, Converter] = {}

    def build(self, target: Any) -> Converter:
        if target is Any or target is object:
            return lambda value, path: value
        if target is None or target is type(None):
            return _exact(type(None), "null")
        if target is bool:
            return _exact(bool, "a boolean")
        if target is int:
            return _int
        if target is float:
            return _float
        if target is str:
            return _exact(str, "a string")
        if isinstance(target, type) and dataclasses.is_dataclass(target):
            return self._dataclass(target)
        origin = typing.get_origin(target)
        args = typing.get_args(target)
        if origin in (typing.Union, types.UnionType):
            return self._union(target, [self.build(a) for a in args])
        if origin is typing.Literal:
            return _literal(args)
        if origin in (list, typing.List):  # noqa: UP006
            return _list(self.build(args[0]) if args else self.build(Any))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = self.build(args[0])
            as_list = _list(item)
            return lambda value, path: tuple(as_list(value, path))
        if origin is tuple and args:
            return _fixed_tuple([self.build(a) for a in args])
        if origin in (dict, typing.Dict):  # noqa: UP006
            if args and args[0] is not str:
                raise TypeError(f"json_decoder: dict keys must be str, not {type_label(args[0])}")
            return _dict(self.build(args[1]) if args else self.build(Any))
        if target is list:
            return _list(self.build(Any))
        if target is dict:
            return _dict(self.build(Any))
        raise TypeError(f"json_decoder: unsupported type {type_label(target)}")

    def _union(self, target: Any, options: list[Converter]) -> Converter:
        label = type_label(target)

        def convert(value: Any, path: str) -> Any:
            reasons = []
            for option in options:
                try:
                    return option(value, path)
                except JSONShapeError as exc:
                    reasons.append(str(exc))
            if len(reasons) == 1:
                raise JSONShapeError(reasons[0])
            raise JSONShapeError(f"{path}: {json_type_name(value)} matches none of {label}")

        return convert

    def _dataclass(self, cls: type) -> Converter:
        if cls in self._dataclasses:
            return self._dataclasses[cls]
        fields_cache: dict[str, tuple[Converter, bool]] = {}

        def convert(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise JSONShapeError(
                    f"{path}: expected an object ({cls.__name__}), got {json_type_name(value)}"
                )
            unknown = sorted(set(value) - set(fields_cache))
            if unknown:
                known = ", ".join(fields_cache) or "none"
                raise JSONShapeError(
                    f'{path}: unknown field "{unknown[0]}" in {cls.__name__} (known: {known})'
                )
            kwargs: dict[str, Any] = {}
            for key, (field_convert, required) in fields_cache.items():
                if key in value:
                    kwargs[key] = field_convert(value[key], f"{path}.{key}")
                elif required:
                    raise JSONShapeError(f'{path}: missing field "{key}" of {cls.__name__}')
            return cls(**kwargs)

        self._dataclasses[cls] = convert
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise TypeError(
                f"json_decoder: cannot resolve annotations of {cls.__name__}: {exc}"
            ) from exc
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            fields_cache[field.name] = (self.build(hints.get(field.name, Any)), required)
        return convert


def _exact(kind: type, label: str) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if type(value) is not kind:
            raise JSONShapeError(f"{path}: expected {label}, got {json_type_name(value)}")
        return value

    return convert


def _int(value: Any, path: str) -> Any:
    if type(value) is not int:
        raise JSONShapeError(f"{path}: expected an integer, got {json_type_name(value)}")
    return value


def _float(value: Any, path: str) -> Any:
    if type(value) not in (int, float):
        raise JSONShapeError(f"{path}: expected a number, got {json_type_name(value)}")
    return float(value)


def _literal(choices: tuple[Any, ...]) -> Converter:
    def convert(value: Any, path: str) -> Any:
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return value
        allowed = ", ".join(repr(c) for c in choices)
        raise JSONShapeError(f"{path}: expected one of {allowed}")

    return convert


def _list(item: Converter) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise JSONShapeError(f"{path}: expected an array, got {json_type_name(value)}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return convert


def _fixed_tuple(items: list[Converter]) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise JSONShapeError(f"{path}: expected an array, got {json_type_name(value)}")
        if len(value) != len(items):
            raise JSONShapeError(f"{path}: expected {len(items)} items, got {len(value)}")
        return tuple(
            c(v, f"{path}[{i}]") for i, (c, v) in enumerate(zip(items, value, strict=True))
        )

    return convert


def _dict(item: Converter) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise JSONShapeError(f"{path}: expected an object, got {json_type_name(value)}")
        return {k: item(v, f"{path}.{k}") for k, v in value.items()}

    return convert
