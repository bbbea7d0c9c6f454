"""Checking a `Document` against the spec with strictyaml, reporting every mistake.

The spec compiles to strictyaml validators. strictyaml stops at the first error, so
entries marked ``isolate`` (each repository, reloader, process) compile to a
stand-in and are validated one by one: a typo in one process does not hide a typo
in the next. Errors are located through the tree's own line/column data (strictyaml's
``problem_mark`` re-renders the document and is wrong for flow style) and reworded
from the spec, so they say what was expected.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from caproni_tasks.config.spec import (
    Data,
    ListOf,
    MapOf,
    Node,
    OneOrList,
    Reloader,
    Scalar,
    Struct,
)
from caproni_tasks.config.yamldoc import Document, YamlPath, plain
from caproni_tasks.diagnostics import Diagnostic

__all__ = ["INVALID", "Checker"]

#: Our scalar errors carry this as strictyaml "context"; the problem is the message.
_OWN_MESSAGE = "\x00caproni"


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __deepcopy__(self, memo: dict[int, Any]) -> _Marker:
        return self


#: Stands for an entry validated separately (or a part that failed validation).
DEFERRED = _Marker("DEFERRED")
INVALID = _Marker("INVALID")


@functools.cache
def _validator_classes() -> dict[str, type]:
    """strictyaml subclasses, built on first use so importing this module stays cheap."""
    from strictyaml.representation import YAML
    from strictyaml.scalar import ScalarValidator
    from strictyaml.validators import Validator

    class Deferred(Validator):  # type: ignore[misc]
        """Accepts anything and leaves a marker: validated on its own later."""

        def __call__(self, chunk: Any) -> Any:
            return YAML(DEFERRED)

    class SpecScalar(ScalarValidator):  # type: ignore[misc]
        def __init__(self, node: Scalar) -> None:
            self._node = node

        @property
        def rule_description(self) -> str:
            return self._node.describe()

        def validate_scalar(self, chunk: Any) -> object:
            try:
                return self._node.parse(str(chunk.contents))
            except ValueError as exc:
                chunk.expecting_but_found(_OWN_MESSAGE, str(exc))
                raise  # unreachable: expecting_but_found raises

    return {"Deferred": Deferred, "SpecScalar": SpecScalar}


#: id(node) → (node, validator); holding the node keeps its id from being reused.
_compiled: dict[int, tuple[Node, Any]] = {}


def compile_node(node: Node) -> Any:
    """The strictyaml validator for ``node`` (isolated entries become markers)."""
    cached = _compiled.get(id(node))
    if cached is None or cached[0] is not node:
        cached = _compiled[id(node)] = (node, _compile(node))
    return cached[1]


def _compile(node: Node) -> Any:
    import strictyaml as sy

    classes = _validator_classes()
    if isinstance(node, Scalar):
        return classes["SpecScalar"](node)
    if isinstance(node, Data):
        return classes["Deferred"]()
    if isinstance(node, Reloader):
        base = {_key(k, f.required): compile_node(f.node) for k, f in node.fields.items()}
        return sy.MapCombined(base, sy.Str(), classes["Deferred"]())
    if isinstance(node, Struct):
        validator = sy.Map(
            {_key(k, f.required): compile_node(f.node) for k, f in node.fields.items()}
        )
        if any(f.required for f in node.fields.values()):
            return validator
        return sy.EmptyDict() | validator
    if isinstance(node, MapOf):
        value = classes["Deferred"]() if node.isolate else compile_node(node.value)
        return sy.EmptyDict() | sy.MapPattern(compile_node(node.key), value)
    if isinstance(node, ListOf):
        return sy.EmptyList() | sy.Seq(compile_node(node.item))
    if isinstance(node, OneOrList):
        return compile_node(node.item) | sy.Seq(compile_node(node.item))
    raise TypeError(f"no strictyaml form for {type(node).__name__}")


def _key(name: str, required: bool) -> Any:
    import strictyaml as sy

    return name if required else sy.Optional(name)


def expected(node: Node) -> str:
    if isinstance(node, Scalar):
        return node.describe()
    if isinstance(node, ListOf):
        return "a list (one '- item' per line, or [a, b])"
    if isinstance(node, OneOrList):
        return f"{node.item.describe()} or a list of them"
    if isinstance(node, Struct) and node.fields:
        return "a mapping with keys " + ", ".join(node.fields)
    return "a mapping"


_FOUND = {
    "a sequence": "a list",
    "a mapping": "a mapping",
    "a blank string": "an empty value",
}


@dataclass
class Checker:
    """Validates parts of one document and collects diagnostics."""

    doc: Document
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, path: YamlPath, code: str, message: str, *, key: bool = False) -> None:
        where = self.doc.locate(path, key=key)
        self.diagnostics.append(
            Diagnostic.error(where.file, where.line, where.column, code, message)
        )

    def check(self, node: Node, path: YamlPath) -> Any:
        """Plain data for the value at ``path`` with scalars parsed, or `INVALID`."""
        from strictyaml import YAMLValidationError
        from strictyaml.yamllocation import YAMLChunk

        tree = self.doc.get(path)
        try:
            data = compile_node(node)(YAMLChunk(tree, label=self.doc.main)).data
        except YAMLValidationError as exc:
            self._report(exc, node, path)
            return INVALID
        except Exception as exc:  # strictyaml failing on an odd value: still a diagnostic
            self.error(
                path,
                "invalid-value",
                f"cannot check this value (the YAML library failed: {type(exc).__name__}: {exc})",
            )
            return INVALID
        return self._fill(node, data, path)

    def check_root(self, node: Struct) -> dict[str, Any]:
        """The top level, key by key, so one wrong section does not hide the others."""
        data: dict[str, Any] = {}
        for key in self.doc.root:
            spec = node.fields.get(key)
            if spec is None:
                known = list(node.fields)
                self.error(
                    (key,),
                    "unknown-key",
                    f"unknown top-level key '{key}'{_did_you_mean(key, known)}; "
                    f"expected one of: {', '.join(known)}",
                    key=True,
                )
                continue
            data[key] = self.check(spec.node, (key,))
        for key, spec in node.fields.items():
            if spec.required and key not in self.doc.root:
                hint = " (this loader reads Caproni v2 files: add 'version: 2')"
                self.error(
                    (),
                    "missing-key",
                    f"missing required key {key}" + (hint if key == "version" else ""),
                )
        return data

    def _fill(self, node: Node, data: Any, path: YamlPath) -> Any:
        if isinstance(node, Data):
            return self._data(node, path)
        if isinstance(node, Reloader):
            return self._reloader(node, data, path)
        if isinstance(node, Struct):
            for name, spec in node.fields.items():
                if name in data:
                    data[name] = self._fill(spec.node, data[name], (*path, name))
            return data
        if isinstance(node, MapOf):
            for name in list(data):
                child = (*path, name)
                data[name] = (
                    self.check(node.value, child)
                    if node.isolate
                    else self._fill(node.value, data[name], child)
                )
            return data
        if isinstance(node, ListOf):
            return [self._fill(node.item, item, (*path, i)) for i, item in enumerate(data)]
        return data

    def _data(self, node: Data, path: YamlPath) -> Any:
        from strictyaml.ruamel.comments import CommentedMap

        tree = self.doc.get(path)
        if not node.mapping:
            return plain(tree)
        if isinstance(tree, str) and not tree.strip():
            return {}
        if not isinstance(tree, CommentedMap):
            self.error(path, "wrong-type", "expected a mapping of settings")
            return INVALID
        return plain(tree)

    def _reloader(self, node: Reloader, data: dict[str, Any], path: YamlPath) -> Any:
        from caproni_tasks.config.kinds import find_kind, kind_names

        kind = str(data.get("type", ""))
        found = find_kind(kind, quiet=True)
        section = found.section if found is not None else None
        others = set(kind_names()) - {kind}
        valid = True
        if kind in node.fields:
            self.error(
                (*path, "type"),
                "invalid-value",
                f"'{kind}' cannot be a reloader type: it is one of the reloader's own keys",
            )
            return INVALID
        for key in list(data):
            if key in node.fields:
                continue
            child = (*path, key)
            if key == kind:
                data[key] = (
                    self.check(section, child) if section is not None else self._data(Data(), child)
                )
            elif key in others:
                self.error(
                    child,
                    "kind-mismatch",
                    f"a '{key}:' section does not belong to a reloader of type '{kind}'; "
                    f"its settings go under '{kind}:' (or change type to {key})",
                    key=True,
                )
                valid = False
            else:
                allowed = [*node.fields, kind]
                self.error(
                    child,
                    "unknown-key",
                    f"unknown key '{key}'{_did_you_mean(key, allowed)}; a reloader has "
                    f"{', '.join(node.fields)} and a '{kind}:' section",
                    key=True,
                )
                valid = False
        if kind not in data and isinstance(section, Struct):
            if any(f.required for f in section.fields.values()):
                self.error(
                    (*path, "type"),
                    "missing-section",
                    f"a reloader of type '{kind}' needs a '{kind}:' section ({expected(section)})",
                )
                valid = False
            else:
                data[kind] = {}
        return data if valid else INVALID

    def _report(self, exc: Any, root: Node, base: YamlPath) -> None:
        steps: list[str | int] = []
        at_key = False
        for kind, index in exc._chunk.pointer._indices:
            if kind == "val":
                steps.append(index[0])
            elif kind == "index":
                steps.append(index)
            elif kind == "key":
                steps.append(index[0])
                at_key = True
        path = (*base, *steps)
        node = _node_at(root, steps)
        context = str(exc.context or "")
        problem = str(exc.problem or "")
        if context == _OWN_MESSAGE:
            self.error(path, "invalid-value", problem, key=at_key)
        elif problem.startswith("unexpected key not in schema"):
            parent = _node_at(root, steps[:-1])
            known = list(parent.fields) if isinstance(parent, Struct) else []
            name = str(steps[-1]) if steps else "?"
            listing = f"; expected one of: {', '.join(known)}" if known else ""
            self.error(
                path,
                "unknown-key",
                f"unknown key '{name}'{_did_you_mean(name, known)}{listing}",
                key=True,
            )
        elif "required key(s)" in problem:
            missing = re.findall(r"'([^']*)'", problem)
            plural = "s" if len(missing) > 1 else ""
            names = ", ".join(missing)
            self.error(path, "missing-key", f"missing required key{plural} {names}", key=True)
        elif context.startswith("when expecting"):
            found = problem.removeprefix("found ")
            contents = exc._chunk.contents
            if isinstance(contents, str) and contents.strip():
                found = _quoted(str(contents))
            else:
                found = _FOUND.get(found, found)
            wanted = expected(node) if node is not None else context.removeprefix("when expecting ")
            hint = ""
            if isinstance(node, Struct | MapOf) and isinstance(contents, str) and ": " in contents:
                hint = " (indent the keys below it further to make them its mapping)"
            self.error(path, "wrong-type", f"expected {wanted}; found {found}{hint}", key=at_key)
        else:
            self.error(path, "invalid-value", f"{context}: {problem}".strip(": "), key=at_key)


def _node_at(root: Node, steps: list[str | int]) -> Node | None:
    node: Node | None = root
    for step in steps:
        if isinstance(node, Struct) and isinstance(step, str):
            spec = node.fields.get(step)
            node = spec.node if spec is not None else None
        elif isinstance(node, MapOf):
            node = node.value
        elif isinstance(node, ListOf | OneOrList):
            node = node.item
        else:
            return None
    return node


def _quoted(text: str, limit: int = 40) -> str:
    """A found value for a message: its first line, shortened."""
    first = text.strip().split("\n", 1)[0]
    if len(first) > limit or "\n" in text.strip():
        return repr(first[:limit].rstrip() + "…")
    return repr(first)


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""
