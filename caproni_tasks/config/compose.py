"""Which files make up one config, in merge order.

A Caproni project is more than ``caproni.yaml``:

- ``extends: [file, …]`` (in ``caproni.yaml``, ``caproni.local.yaml`` or any extended
  file) merges those files *before* the file naming them, in order; paths are relative
  to the naming file. A missing file or a cycle is an error at the entry.
- A repository in edit mode (``repositories.<r>.edit_mode: true`` after the overlay)
  whose directory holds ``caproni-project.yaml`` contributes that *fragment* (its own
  ``lifecycle_hooks`` and ``reloaders``), after the main file and its extended files.
- ``caproni.local.yaml`` (with its extended files) comes last, so it can switch on a
  reloader that a fragment defines.

Each file becomes a `Layer`; `caproni_tasks.config.yamldoc.Document.of_layers` merges
them and still locates every value in its own file. Files read besides the main file
and its overlay are recorded in ``deps`` (path → digest, ``None`` when absent) so a
cached config can tell when one of them changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.config.model import Location
from caproni_tasks.config.yamldoc import Document, ParsedFile, parse_yaml
from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.userfiles import read_regular_text

__all__ = [
    "CONCATENATED",
    "FRAGMENT_NAME",
    "Composer",
    "Layer",
    "edit_mode_repositories",
    "is_fragment",
    "unmerged_fragment_of",
]

#: The per-repository fragment a repository in edit mode may hold.
FRAGMENT_NAME = "caproni-project.yaml"

#: Top-level lists joined across files instead of replaced.
CONCATENATED = ("lifecycle_hooks", "extends")


def is_fragment(path: Path) -> bool:
    return path.name == FRAGMENT_NAME


@dataclass
class Layer:
    parsed: ParsedFile
    path: Path  # absolute
    #: ``main``, ``extends``, ``fragment`` or ``overlay``.
    role: str
    #: Where the file's top-level lifecycle hooks run: the config's directory, or the
    #: repository directory for a fragment (and the files it extends).
    directory: Path
    repository: str | None = None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Composer:
    """Collects the layers of one config, their texts and the problems found."""

    #: The main file's directory (relative directories of repositories resolve here).
    base: Path
    #: Name of the main file as diagnostics show it; other names are shown relative to it.
    main_name: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    deps: dict[str, str | None] = field(default_factory=dict)
    read: Callable[[Path], str] = read_regular_text

    def shown(self, path: Path) -> str:
        """``path`` as diagnostics name it: relative like the main file's name when below
        the main file's directory, else absolute."""
        try:
            relative = path.relative_to(self.base)
        except ValueError:
            return str(path)
        return os.path.normpath(os.path.join(os.path.dirname(self.main_name), relative))

    def chain(
        self,
        parsed: ParsedFile,
        path: Path,
        role: str,
        directory: Path,
        *,
        repository: str | None = None,
        stack: tuple[Path, ...] = (),
    ) -> list[Layer]:
        """The layers of ``parsed`` and of the files it extends (recursively), extended
        files first."""
        from strictyaml.ruamel.comments import CommentedMap, CommentedSeq

        layers: list[Layer] = []
        root = parsed.root
        stack = (*stack, path)
        extends = root.get("extends") if isinstance(root, CommentedMap) else None
        if isinstance(extends, CommentedSeq):
            doc = Document.of(parsed)
            for index, entry in enumerate(extends):
                if not isinstance(entry, str) or not entry.strip():
                    continue  # the schema check reports it
                where = doc.locate(("extends", index))
                target = Path(os.path.normpath(path.parent / Path(entry).expanduser()))
                if target in stack:
                    cycle = " -> ".join(self.shown(p) for p in (*stack[stack.index(target) :],))
                    self._error(
                        where,
                        "extends-cycle",
                        f"extends cycle: {cycle} -> {self.shown(target)}; remove one of them",
                    )
                    continue
                sub = self._parse(target, where, required=True)
                if sub is None:
                    continue
                layers.extend(
                    self.chain(
                        sub, target, "extends", directory, repository=repository, stack=stack
                    )
                )
        layers.append(Layer(parsed, path, role, directory, repository))
        return layers

    def fragment(self, repository: str, directory: Path, stack: tuple[Path, ...]) -> list[Layer]:
        """The layers of ``directory/caproni-project.yaml``, if it exists."""
        path = directory / FRAGMENT_NAME
        parsed = self._parse(path, None, required=False)
        if parsed is None:
            return []
        return self.chain(parsed, path, "fragment", directory, repository=repository, stack=stack)

    def _parse(self, path: Path, where: Location | None, *, required: bool) -> ParsedFile | None:
        name = self.shown(path)
        try:
            text = self.read(path)
        except FileNotFoundError:
            self.deps[str(path)] = None
            if required and where is not None:
                self._error(where, "extends-missing", f"extends: no such file {name}")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.deps[str(path)] = None
            reason = (
                "not UTF-8 text"
                if isinstance(exc, UnicodeDecodeError)
                else (exc.strerror or str(exc))
            )
            if where is not None:
                self._error(where, "unreadable", f"cannot read {name}: {reason}")
            else:
                self.diagnostics.append(
                    Diagnostic.error(name, 0, 0, "unreadable", f"cannot read the file: {reason}")
                )
            return None
        self.deps[str(path)] = digest(text)
        self.sources[name] = text
        parsed, problems = parse_yaml(text, name)
        self.diagnostics.extend(problems)
        if parsed is None or parsed.root is None:
            return None
        return parsed

    def _error(self, where: Location, code: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic.error(where.file, where.line, where.column, code, message)
        )


def _repositories(root: Any, base: Path) -> list[tuple[str, Path, bool]]:
    """Every repository of a merged tree: name, directory, whether in edit mode."""
    from strictyaml.ruamel.comments import CommentedMap

    from caproni_tasks.config.spec import Boolean

    repositories = root.get("repositories") if isinstance(root, CommentedMap) else None
    if not isinstance(repositories, CommentedMap):
        return []
    found: list[tuple[str, Path, bool]] = []
    for name, entry in repositories.items():
        if not isinstance(entry, CommentedMap):
            continue
        try:
            on = Boolean().parse(str(entry.get("edit_mode", "false")))
        except ValueError:
            continue
        directory = entry.get("directory")
        relative = directory if isinstance(directory, str) and directory.strip() else str(name)
        found.append(
            (str(name), Path(os.path.normpath(base / Path(relative).expanduser())), on is True)
        )
    return found


def edit_mode_repositories(root: Any, base: Path) -> list[tuple[str, Path]]:
    """Repositories with ``edit_mode: true`` in a merged tree, with their directories."""
    return [(name, directory) for name, directory, on in _repositories(root, base) if on]


def unmerged_fragment_of(
    reloader: str, root: Any, base: Path, read: Callable[[Path], str] = read_regular_text
) -> tuple[str, Path] | None:
    """The repository (not in edit mode) whose ``caproni-project.yaml`` defines
    ``reloader``, and that file: for a reloader an overlay switches on while its
    fragment is not merged. None when no such fragment defines it."""
    from strictyaml.ruamel.comments import CommentedMap

    for name, directory, on in _repositories(root, base):
        if on:
            continue
        path = directory / FRAGMENT_NAME
        try:
            text = read(path)
        except (OSError, UnicodeDecodeError):
            continue
        parsed, _ = parse_yaml(text, str(path))
        tree = parsed.root if parsed is not None else None
        reloaders = tree.get("reloaders") if isinstance(tree, CommentedMap) else None
        if isinstance(reloaders, CommentedMap) and reloader in reloaders:
            return name, path
    return None
