"""Watch globs, relative to a process's directory, as path matchers and watch roots.

Semantics (gitignore-like, documented in docs/reloaders.md):

- ``*`` and ``?`` stay within one path segment, ``[abc]``/``[!abc]`` are classes and
  ``**`` spans any number of segments;
- a pattern without ``/`` matches a name at any depth (``*.py``), a pattern with ``/``
  is anchored at the directory (``src/**/*.py``);
- a pattern that matches a directory matches everything below it (``src``, ``build/``).

Only the directories a watch glob can match something in are watched (`PathMatcher.
wants_directory`), and ignored directories are never entered: ``src/**/*.py`` beside a
large ``node_modules`` watches the process's directory and the tree under ``src``.
A default ignore does not apply to a directory a watch glob names literally
(``watch: ["build/**"]`` watches ``build``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

__all__ = [
    "DEFAULT_IGNORES",
    "PathMatcher",
    "fold_roots",
    "glob_regex",
    "nearest_existing",
    "watch_roots",
]

#: Always ignored (unless a watch glob names them literally): VCS internals, dependency
#: and tool caches, build output, bytecode and editors' swap/backup files, which change
#: on every save or install and would otherwise restart processes watching a whole tree
#: (and cost a kernel watch per directory).
DEFAULT_IGNORES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    ".venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    "dist",
    "build",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".*.swp",
    ".*.swx",
    ".*.swo",
    "*~",
    ".#*",
    "4913",
    ".DS_Store",
)

_MAGIC = re.compile(r"[*?\[]")


def _normalise(pattern: str) -> str:
    pattern = pattern.strip().replace(os.sep, "/")
    while pattern.startswith("./"):
        pattern = pattern[2:]
    if pattern.endswith("/"):
        pattern += "**"
    return pattern or "**"


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The compiled regular expression of a watch/ignore glob, for posix relative paths."""
    pattern = _normalise(pattern)
    anchored = "/" in pattern
    segments = pattern.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if last and parts:  # "dir/**": everything below dir (and dir itself)
                parts[-1] = parts[-1][:-1] + "(?:/.*)?"
            else:
                parts.append(".*" if last else "(?:.*/)?")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    body = "".join(parts)
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"{prefix}{body}(?:/.*)?", re.DOTALL)


def _literal_prefix(pattern: str) -> str:
    literal: list[str] = []
    for segment in _normalise(pattern).split("/"):
        if _MAGIC.search(segment):
            break
        literal.append(segment)
    return "/".join(literal)


def watch_roots(directory: Path, patterns: Iterable[str]) -> list[Path]:
    """The directories to watch (recursively) for ``patterns``: each pattern's literal
    leading directories; the nearest existing parent when that does not exist yet (it is
    picked up when created); nested roots folded into their ancestors."""
    roots: set[Path] = set()
    for pattern in patterns:
        normal = _normalise(pattern)
        if "/" not in normal:
            candidate = directory  # matches at any depth
        else:
            prefix = _literal_prefix(normal)
            candidate = directory / prefix if prefix else directory
            if prefix == normal.rstrip("/") and not candidate.is_dir():
                candidate = candidate.parent  # a literal file: watch its directory
        roots.add(nearest_existing(candidate))
    return fold_roots(roots)


def nearest_existing(path: Path) -> Path:
    """``path`` if it is a directory, else its nearest ancestor that is one."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def fold_roots(roots: Iterable[Path]) -> list[Path]:
    """Roots without those inside another root (watching is recursive), shortest first."""
    kept: list[Path] = []
    for root in sorted(set(roots), key=lambda p: len(p.parts)):
        if not any(root == k or k in root.parents for k in kept):
            kept.append(root)
    return kept


def _segments_can_lead_to_match(pattern: list[str], directory: list[str]) -> bool:
    """Whether ``pattern`` (segments, ``**`` spanning any number) can match the
    directory itself, an ancestor of it (then everything below matches), or something
    below it."""
    if not directory or not pattern:
        return True
    head = pattern[0]
    if head == "**":
        return _segments_can_lead_to_match(pattern[1:], directory) or (
            _segments_can_lead_to_match(pattern, directory[1:])
        )
    if re.fullmatch(_segment_regex(head), directory[0], re.DOTALL) is None:
        return False
    return _segments_can_lead_to_match(pattern[1:], directory[1:])


def _pattern_segments(pattern: str) -> list[str]:
    normal = _normalise(pattern)
    segments = normal.split("/")
    return segments if "/" in normal else ["**", *segments]


class PathMatcher:
    """Decides whether a changed path concerns a process: inside its directory, matched
    by a watch glob and by no ignore glob (nor a default ignore)."""

    def __init__(
        self,
        directory: Path,
        watch: Sequence[str],
        ignore: Sequence[str] = (),
        *,
        default_ignores: bool = True,
    ) -> None:
        self.directory = directory
        self.watch = tuple(watch)
        named = {seg for p in self.watch for seg in _literal_prefix(p).split("/") if seg}
        defaults = tuple(
            g
            for g in (DEFAULT_IGNORES if default_ignores else ())
            if not any(glob_regex(g).fullmatch(seg) for seg in named)
        )
        self.ignore = tuple(ignore) + defaults
        self._watch = [glob_regex(p) for p in self.watch]
        self._segments = [_pattern_segments(p) for p in self.watch]
        self._ignore = [glob_regex(p) for p in self.ignore]
        self.roots = watch_roots(directory, self.watch)
        self._prefix = str(directory).rstrip(os.sep) + os.sep

    def relative(self, path: str) -> str | None:
        if not path.startswith(self._prefix):
            return None
        return PurePosixPath(*Path(path[len(self._prefix) :]).parts).as_posix()

    def inside_and_kept(self, path: str) -> bool:
        """Inside the directory and not ignored: a new directory here may hold matches."""
        rel = self.relative(path)
        return bool(rel) and not any(r.fullmatch(rel or "") for r in self._ignore)

    def wants_directory(self, path: str) -> bool:
        """Whether the directory ``path`` needs watching: inside (or equal to) the
        process's directory, not ignored, and a watch glob can match in or below it."""
        if path == str(self.directory):
            return True
        rel = self.relative(path)
        if not rel or any(r.fullmatch(rel) for r in self._ignore):
            return False
        parts = rel.split("/")
        return any(_segments_can_lead_to_match(p, parts) for p in self._segments)

    def matches(self, path: str) -> bool:
        rel = self.relative(path)
        if rel is None or not rel:
            return False
        if not any(r.fullmatch(rel) for r in self._watch):
            return False
        return not any(r.fullmatch(rel) for r in self._ignore)
