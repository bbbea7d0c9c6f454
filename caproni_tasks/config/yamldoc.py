"""YAML text → a tree that remembers where every key and value was written.

strictyaml's parser does the reading (no tags, no anchors, no duplicate keys; flow
style such as ``{a: 1}`` and ``[a, b]`` is allowed on purpose because Caproni files
use it). The tree is strictyaml's ruamel ``CommentedMap``/``CommentedSeq`` with line
and column data; `Document` merges a personal overlay on top and still answers "which
file, which line" for any path, so overlay mistakes point into the overlay.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from caproni_tasks.config.model import Location
from caproni_tasks.diagnostics import Diagnostic

__all__ = ["Document", "ParsedFile", "YamlPath", "parse_yaml", "plain"]

#: Keys (str) and list indices (int) from the root to a node.
YamlPath = tuple[str | int, ...]


@dataclass
class ParsedFile:
    name: str
    #: A ``CommentedMap``; ``None`` when the file is empty.
    root: Any


@functools.cache
def _unchecked_class() -> type:
    """A strictyaml validator that accepts anything: a file is parsed, then validated."""
    from strictyaml.validators import Validator

    class Unchecked(Validator):  # type: ignore[misc]
        def validate(self, chunk: Any) -> None:
            return None

    return Unchecked


def unchecked() -> Any:
    return _unchecked_class()()


#: Deepest nesting of mappings and lists accepted. Real configs stay under ten levels;
#: the limit keeps the recursive YAML library and validators far from Python's stack
#: limit, so a pathological file is one diagnostic, not a RecursionError.
MAX_DEPTH = 50

#: What YAML 1.2 allows in a stream (the "printable" set); anything else is refused
#: before the parser sees it (strictyaml crashes on ruamel's ReaderError).
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def parse_yaml(text: str, name: str) -> tuple[ParsedFile | None, list[Diagnostic]]:
    """Parse without a schema; YAML syntax problems come back as diagnostics.

    This is the one place the YAML library reads text, and it never raises for what
    the text contains: characters YAML does not allow, nesting deeper than `MAX_DEPTH`,
    and failures inside strictyaml or ruamel are all diagnostics with line and column.
    """
    text = text.removeprefix("\ufeff")  # a byte order mark is not content
    problem = _character_problem(text, name)
    if problem is not None:
        return None, [problem]
    if _bracket_depth(text) > MAX_DEPTH:
        # Deep flow nesting makes ruamel's scanner quadratic and its composer recurse:
        # the event parser decides first, stopping at the first level too deep.
        problem = _structure_problem(text, name)
        if problem is not None:
            return None, [problem]
    try:
        root = _load(text, name)
    except _SyntaxProblem as problem_:
        return None, [problem_.diagnostic]
    except RecursionError:
        return None, [_structure_problem(text, name) or _too_deep(name, 1, 1)]
    except Exception as exc:  # a bug of the YAML library on odd input: still located
        return None, [_structure_problem(text, name) or _library_failure(name, exc)]
    from strictyaml.ruamel.comments import CommentedMap

    if isinstance(root, str) and _only_comments(text):
        return ParsedFile(name, None), []
    if not isinstance(root, CommentedMap):
        found = "a list" if isinstance(root, list) else "text"
        return None, [
            Diagnostic.error(
                name, 1, 1, "config-not-mapping", f"expected a mapping of keys; found {found}"
            )
        ]
    deep = _deepest(root)
    if deep is not None:
        return None, [_too_deep(name, deep[0] + 1, deep[1] + 1)]
    return ParsedFile(name, root), []


class _SyntaxProblem(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _load(text: str, name: str) -> Any:
    import strictyaml
    from strictyaml.ruamel.error import MarkedYAMLError

    try:
        loaded = strictyaml.dirty_load(text, unchecked(), label=name, allow_flow_style=True)
    except MarkedYAMLError as exc:
        raise _SyntaxProblem(_syntax_diagnostic(exc, name)) from None
    return loaded.as_marked_up()


def _character_problem(text: str, name: str) -> Diagnostic | None:
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return None
    char = found.group()
    line, column = _line_column(text, found.start())
    code = f"U+{ord(char):04X}"
    if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
        what = "a NUL byte" if char == "\x00" else f"control character {code}"
    elif 0xD800 <= ord(char) <= 0xDFFF:
        what = f"an unpaired surrogate {code}"
    else:
        what = f"character {code}"
    return Diagnostic.error(
        name,
        line,
        column,
        "yaml-syntax",
        f"invalid YAML: {what} is not allowed in a YAML file; remove it",
    )


_BRACKETS = re.compile(r"[\[\]{}]")


def _bracket_depth(text: str) -> int:
    """An upper bound of the flow nesting depth (brackets inside text count too)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of *offset* (lines end at ``\\n``)."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _too_deep(name: str, line: int, column: int) -> Diagnostic:
    return Diagnostic.error(
        name,
        line,
        column,
        "yaml-too-deep",
        f"mappings and lists nested more than {MAX_DEPTH} levels deep: flatten the structure",
    )


def _library_failure(name: str, exc: Exception) -> Diagnostic:
    return Diagnostic.error(
        name,
        1,
        1,
        "yaml-syntax",
        f"invalid YAML: the YAML parser cannot read this file ({type(exc).__name__}: {exc})",
    )


def _deepest(root: Any) -> tuple[int, int] | None:
    """(line, column), 0-based, of the first container nested deeper than `MAX_DEPTH`."""
    from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            lc = getattr(node, "lc", None)
            return (getattr(lc, "line", 0) or 0, getattr(lc, "col", 0) or 0)
        if isinstance(node, CommentedMap):
            children = list(node.values())
        elif isinstance(node, CommentedSeq):
            children = list(node)
        else:
            continue
        stack.extend((child, depth + 1) for child in children)
    return None


@dataclass
class _Frame:
    """An open container in the event stream: its keys so far (None for a list)."""

    keys: set[str] | None
    expect_key: bool = True


def _structure_problem(text: str, name: str) -> Diagnostic | None:
    """Explain a file the YAML library failed on, from the parser's event stream.

    The event parser is a state machine (no recursion), so it gets through what the
    recursive loader cannot: it finds nesting beyond `MAX_DEPTH`, duplicate keys (which
    make strictyaml's comment handling crash when blank lines separate them) and the
    syntax error itself, with its position.
    """
    from strictyaml.ruamel import events
    from strictyaml.ruamel.error import MarkedYAMLError
    from strictyaml.ruamel.loader import SafeLoader
    from strictyaml.ruamel.main import parse
    from strictyaml.ruamel.reader import ReaderError

    frames: list[_Frame] = []
    try:
        for event in parse(text, Loader=SafeLoader):
            if isinstance(event, events.MappingEndEvent | events.SequenceEndEvent):
                frames.pop()
                continue
            if not isinstance(event, events.NodeEvent):
                continue  # stream and document boundaries
            mark = event.start_mark
            is_key = False
            if frames and frames[-1].keys is not None:
                is_key = frames[-1].expect_key
                frames[-1].expect_key = not is_key
            if isinstance(event, events.MappingStartEvent | events.SequenceStartEvent):
                if len(frames) + 1 > MAX_DEPTH:
                    return _too_deep(name, mark.line + 1, mark.column + 1)
                mapping = isinstance(event, events.MappingStartEvent)
                frames.append(_Frame(set() if mapping else None))
            elif isinstance(event, events.ScalarEvent) and is_key:
                keys = frames[-1].keys
                assert keys is not None
                if event.value in keys:
                    return Diagnostic.error(
                        name,
                        mark.line + 1,
                        mark.column + 1,
                        "yaml-syntax",
                        f"duplicate key '{event.value}' found",
                    )
                keys.add(event.value)
    except MarkedYAMLError as exc:
        return _syntax_diagnostic(exc, name)
    except ReaderError as exc:
        line, column = _line_column(text, int(getattr(exc, "position", 0) or 0))
        return Diagnostic.error(name, line, column, "yaml-syntax", f"invalid YAML: {exc}")
    except RecursionError:
        return None
    return None


def _only_comments(text: str) -> bool:
    """True for a document with no content (strictyaml then hands back the raw text)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            return False
    return True


def _syntax_diagnostic(exc: Any, name: str) -> Diagnostic:
    from strictyaml import exceptions as sx

    problem = str(getattr(exc, "problem", None) or "").strip()
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, sx.TagTokenDisallowed):
        message = "YAML tags such as !!str are not allowed: write the plain value"
    elif isinstance(exc, sx.AnchorTokenDisallowed):
        message = (
            "YAML anchors and aliases (&name, *name) are not allowed; "
            "quote the value if '&' or '*' is part of the text"
        )
        mark = getattr(exc, "context_mark", None) or mark
    elif isinstance(exc, sx.DuplicateKeysDisallowed):
        message = problem[0].lower() + problem[1:] if problem else "duplicate key"
        mark = getattr(exc, "context_mark", None) or mark
    else:
        context = str(getattr(exc, "context", None) or "").strip()
        ours = _in_our_words(exc, problem, context)
        if ours is not None:
            message, mark = ours
        elif problem.startswith("but ") and context:
            message = f"invalid YAML: {context}, {problem}"
        else:
            message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    line = int(getattr(mark, "line", 0) or 0) + 1
    column = int(getattr(mark, "column", 0) or 0) + 1
    return Diagnostic.error(name, line, column, "yaml-syntax", message)


class _Mark:
    """A place (0-based, like the parser's marks) for a message that names another line."""

    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column


def _in_our_words(exc: Any, problem: str, context: str) -> tuple[str, Any] | None:
    """The common structure mistakes said plainly, at the line that holds the mistake;
    None for the others (the parser's words are kept)."""
    mark = getattr(exc, "problem_mark", None)
    opened = getattr(exc, "context_mark", None)
    buffer = str(getattr(mark, "buffer", None) or "")
    lines = buffer.rstrip("\0").split("\n")
    if "'\\t'" in problem and "cannot start any token" in problem:
        line_text = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        if mark is not None and not line_text[: mark.column].strip():
            return (
                "a tab ('\\t') indents this line: YAML indents with spaces only; use spaces",
                mark,
            )
        return "a tab ('\\t') where YAML does not allow one: use spaces", mark
    if problem.startswith("expected <block end>") and "found" in problem:
        return (
            "this line is indented less than the mapping it belongs to (and more than the "
            "one around it): line its key up with the keys above it",
            mark,
        )
    if "while scanning a quoted scalar" in context and opened is not None:
        quote = lines[opened.line][opened.column : opened.column + 1] if lines else '"'
        return f"this {quote} quote is never closed: add the closing {quote}", opened
    if "flow sequence" in context or "flow mapping" in context:
        bracket, closing = ("[", "]") if "sequence" in context else ("{", "}")
        if opened is None:
            return f"a {bracket} is not closed here: close it with {closing}", mark
        where = f"line {opened.line + 1}, column {opened.column + 1}"
        if "<stream end>" in problem:
            return f"this {bracket} is never closed: close it with {closing}", opened
        return f"the {bracket} opened at {where} is not closed here: close it with {closing}", mark
    if problem == "mapping values are not allowed here" and mark is not None:
        above = mark.line - 1
        while above >= 0 and (not lines[above].strip() or lines[above].lstrip().startswith("#")):
            above -= 1
        if above >= 0 and above < len(lines):
            text = lines[above]
            indent = len(text) - len(text.lstrip())
            if ":" not in text and not text.lstrip().startswith("- ") and indent < mark.column:
                return (
                    f"missing ':' after {text.strip()!r}: the lines below are indented as "
                    "its content",
                    _Mark(above, len(text.rstrip())),
                )
            current = lines[mark.line] if mark.line < len(lines) else ""
            own = len(current) - len(current.lstrip())
            if ":" in text and not text.rstrip().endswith(":") and own > indent:
                key = text.strip().split(":", 1)[0]
                return (
                    f"this line is indented more than '{key}:' above it, whose value is "
                    "already on its line: line it up with that key",
                    _Mark(mark.line, own),
                )
        return (
            "a ': ' inside a plain value: quote the value, or start a new line for a new key",
            mark,
        )
    return None


def _containers(node: Any) -> Iterator[Any]:
    from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, CommentedMap):
            yield current
            stack.extend(current.values())
        elif isinstance(current, CommentedSeq):
            yield current
            stack.extend(current)


@dataclass
class Document:
    """The merged tree plus, per container, the file each entry came from."""

    root: Any
    main: str
    #: id(container) → file, for containers taken whole from one file.
    _owner: dict[int, str] = field(default_factory=dict)
    #: id(merged mapping or list) → key or index → file, for those built by the merge.
    _key_owner: dict[int, dict[str | int, str]] = field(default_factory=dict)
    #: Keeps every source tree alive so the ids above stay valid.
    _keep: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, main: ParsedFile, overlay: ParsedFile | None = None) -> Document:
        return cls.of_layers([main] if overlay is None else [main, overlay])

    @classmethod
    def of_layers(cls, layers: list[ParsedFile], *, concatenate: tuple[str, ...] = ()) -> Document:
        """The first file with each following one merged on top, in order.

        Top-level keys in ``concatenate`` (lists such as ``lifecycle_hooks``) are joined
        rather than replaced, each item still located in its own file.
        """
        from strictyaml.ruamel.comments import CommentedMap

        main = layers[0]
        doc = cls(root=main.root if main.root is not None else CommentedMap(), main=main.name)
        doc._adopt(doc.root, main.name)
        for layer in layers[1:]:
            if layer.root is None:
                continue
            doc._adopt(layer.root, layer.name)
            doc.root = doc._merge(doc.root, layer.root, main.name, layer.name, concatenate)
        return doc

    def _adopt(self, tree: Any, name: str) -> None:
        self._keep.append(tree)
        for container in _containers(tree):
            self._owner[id(container)] = name

    def _merge(
        self,
        base: Any,
        over: Any,
        base_name: str,
        over_name: str,
        concatenate: tuple[str, ...] = (),
    ) -> Any:
        """Deep merge of mappings; anything else in the overlay replaces the base (lists
        under the keys in ``concatenate`` are joined)."""
        from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

        merged = CommentedMap()
        owners: dict[str | int, str] = {}

        def take(key: str, value: Any, source: Any) -> None:
            merged[key] = value
            owners[key] = self.file_of(source, key)
            if source.lc.data is not None and key in source.lc.data:
                merged.lc.add_kv_line_col(key, list(source.lc.data[key]))

        for key, value in base.items():
            if key in over:
                other = over[key]
                if isinstance(value, CommentedMap) and isinstance(other, CommentedMap):
                    take(key, self._merge(value, other, base_name, over_name), base)
                elif (
                    key in concatenate
                    and isinstance(value, CommentedSeq)
                    and isinstance(other, CommentedSeq)
                ):
                    take(key, self._join(value, other), base)
                else:
                    take(key, other, over)
            else:
                take(key, value, base)
        for key, value in over.items():
            if key not in base:
                take(key, value, over)
        merged.lc.line, merged.lc.col = base.lc.line, base.lc.col
        self._keep.append(merged)
        self._key_owner[id(merged)] = owners
        return merged

    def _join(self, first: Any, second: Any) -> Any:
        """Two lists as one, each item keeping its file and position."""
        from strictyaml.ruamel.comments import CommentedSeq

        joined = CommentedSeq()
        owners: dict[str | int, str] = {}
        for source in (first, second):
            for index, item in enumerate(source):
                position = len(joined)
                joined.append(item)
                owners[position] = self.file_of(source, index)
                data = source.lc.data
                if data is not None and index in data:
                    joined.lc.add_kv_line_col(position, list(data[index]))
        joined.lc.line, joined.lc.col = first.lc.line, first.lc.col
        self._keep.append(joined)
        self._key_owner[id(joined)] = owners
        return joined

    def file_of(self, container: Any, key: str | int) -> str:
        owners = self._key_owner.get(id(container))
        if owners is not None and key in owners:
            return owners[key]
        return self._owner.get(id(container), self.main)

    def get(self, path: YamlPath) -> Any:
        node = self.root
        for step in path:
            node = node[step]
        return node

    def locate(self, path: YamlPath, *, key: bool = False) -> Location:
        """Where the value at ``path`` (or its key, with ``key=True``) was written.

        Falls back to the nearest written ancestor for paths that are not in the files.
        """
        parent = self.root
        best = Location(self.main, 1, 1)
        for index, step in enumerate(path):
            last = index == len(path) - 1
            try:
                data = parent.lc.data
                entry = data[step] if data is not None else None
                child = parent[step]
            except (KeyError, IndexError, TypeError, AttributeError):
                return best
            if entry is None:
                return best
            name = self.file_of(parent, step)
            if isinstance(step, int) or (last and key):
                line, column = entry[0], entry[1]
            else:
                line, column = entry[2], entry[3]
            key_location = Location(name, entry[0] + 1, entry[1] + 1)
            best = Location(name, line + 1, column + 1)
            if last:
                return best
            # A nested mapping "starts" at its first key: report its key instead.
            best = key_location
            parent = child
        return best


def plain(node: Any) -> Any:
    """A ruamel tree as plain data with YAML 1.2 core types (``true``, ``8080``, ``null``).

    Used for free-form settings passed to other tools (mirrord's fs/network, third-party
    kinds), where ``true`` must stay a boolean rather than strictyaml's text.
    """
    from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [plain(v) for v in node]
    return _core_scalar(str(node))


_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _core_scalar(text: str) -> Any:
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if _INT.fullmatch(text):
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
