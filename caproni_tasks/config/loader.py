"""``load_config``: caproni.yaml (+ caproni.local.yaml) → `CaproniConfig` or diagnostics.

Never raises for a user's mistake: a missing or unreadable file, bad YAML, schema and
reference errors all come back as `Diagnostic`s with file:line:column.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from caproni_tasks.config.model import CaproniConfig, LifecycleHook
from caproni_tasks.diagnostics import Diagnostic, Severity, has_errors
from caproni_tasks.userfiles import read_regular_text

__all__ = ["LoadResult", "load_config", "load_text", "overlay_path"]

#: ``caproni.yaml`` → ``caproni.local.yaml``.
OVERLAY_NAME_SUFFIX = ".local"


@dataclass
class LoadResult:
    #: The loaded config; ``None`` when any diagnostic is an error.
    config: CaproniConfig | None
    #: Errors, warnings and notices, each with file:line:column.
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: Texts of the files read (main file and overlay), by the name diagnostics use.
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.config is not None


def overlay_path(path: Path) -> Path:
    """The personal overlay beside a config: ``caproni.yaml`` → ``caproni.local.yaml``."""
    return path.with_name(f"{path.stem}{OVERLAY_NAME_SUFFIX}{path.suffix}")


def load_config(path: Path, *, cache: bool = True) -> LoadResult:
    """Load ``path`` and, if it exists, its overlay merged on top.

    A successful load is remembered by content hash (see `caproni_tasks.config.cache`);
    ``cache=False`` always parses and validates.
    """
    path = Path(path)
    name = str(path)
    result = LoadResult(None)
    main_text = _read(path, name, result, required=True)
    if main_text is None:
        return result
    overlay = overlay_path(path)
    overlay_text = _read(overlay, str(overlay), result, required=False)
    return load_text(
        path,
        main_text,
        overlay_text,
        overlay_name=str(overlay) if overlay_text is not None else None,
        result=result,
        cache=cache,
    )


def load_text(
    path: Path,
    text: str,
    overlay_text: str | None = None,
    *,
    overlay_name: str | None = None,
    result: LoadResult | None = None,
    cache: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LoadResult:
    """Load from texts already read (``path`` names the main file). Files the main file
    and the overlay extend, and the ``caproni-project.yaml`` of repositories in edit mode,
    are read from disk; ``environ`` (default: the process environment) is what
    ``variables`` and ``${NAME}`` read.

    A file named ``caproni-project.yaml`` is checked as a fragment on its own: no
    ``version`` needed, repositories defined elsewhere are a notice.
    """
    from caproni_tasks.config.build import Builder
    from caproni_tasks.config.cache import cache_key, read_cached, write_cached
    from caproni_tasks.config.compose import (
        CONCATENATED,
        Composer,
        edit_mode_repositories,
        is_fragment,
    )
    from caproni_tasks.config.shellvars import EnvView
    from caproni_tasks.config.strict import Checker
    from caproni_tasks.config.yamldoc import Document, parse_yaml

    result = result if result is not None else LoadResult(None)
    environ = os.environ if environ is None else environ
    name = str(path)
    result.sources[name] = text
    if overlay_text is not None:
        overlay_name = overlay_name or str(overlay_path(Path(path)))
        result.sources[overlay_name] = overlay_text
    key = None
    if cache and not has_errors(result.diagnostics):
        absolute = str(Path(path).absolute())
        key = cache_key([name, absolute, text, overlay_name, overlay_text])
        hit = read_cached(key, environ)
        if hit is not None:
            result.config, found = hit
            result.diagnostics.extend(found)
            return result
    fragment_mode = is_fragment(Path(path))
    main, problems = parse_yaml(text, name)
    result.diagnostics.extend(problems)
    overlay = None
    if overlay_text is not None and overlay_name is not None:
        overlay, problems = parse_yaml(overlay_text, overlay_name)
        result.diagnostics.extend(problems)
    if main is None or has_errors(result.diagnostics):
        return result
    if main.root is None and not fragment_mode:
        result.diagnostics.append(
            Diagnostic.error(name, 1, 1, "empty-config", "empty config: start it with 'version: 2'")
        )
        return result

    main_path = Path(path).absolute()
    base = main_path.parent
    overlay_abs = base / Path(overlay_name).name if overlay is not None and overlay_name else None
    composer = Composer(base, name, sources=result.sources)
    layers = composer.chain(main, main_path, "main", base)
    late = []
    if overlay is not None and overlay_abs is not None:
        late = composer.chain(overlay, overlay_abs, "overlay", base, stack=(main_path,))
    if not fragment_mode:
        before = Document.of_layers([x.parsed for x in layers + late], concatenate=CONCATENATED)
        for repository, directory in edit_mode_repositories(before.root, base):
            layers += composer.fragment(repository, directory, (main_path,))
    layers += late
    result.diagnostics.extend(composer.diagnostics)
    if has_errors(result.diagnostics):
        return result

    doc = Document.of_layers([x.parsed for x in layers], concatenate=CONCATENATED)
    checker = Checker(doc)
    data = checker.check_root(_fragment_root() if fragment_mode else _root())
    notices = _ignored_notice(doc, result)
    if not fragment_mode:
        _explain_unmerged_fragments(doc, checker.diagnostics, composer, main_path)
    result.diagnostics.extend(checker.diagnostics)
    env = EnvView(environ)
    builder = Builder(doc, result.sources, main_path, overlay=overlay_abs, environ=env)
    _expand_variables(data, builder, env)
    config = builder.build(data, notices)
    config = replace(
        config,
        lifecycle_hooks=_hooks(data, builder, layers),
        files=tuple(layer.path for layer in layers),
    )
    result.diagnostics.extend(builder.diagnostics)
    if fragment_mode:
        result.diagnostics[:] = [_elsewhere(d, name) for d in result.diagnostics]
    files = list(result.sources)
    result.diagnostics.sort(
        key=lambda d: (files.index(d.file) if d.file in files else len(files), d.line, d.column)
    )
    if not has_errors(result.diagnostics):
        result.config = config
        if key is not None and builder.cacheable:
            write_cached(
                key, config, result.diagnostics, deps={"files": composer.deps, "env": env.read}
            )
    return result


def _explain_unmerged_fragments(
    doc: Any, diagnostics: list[Diagnostic], composer: Any, main_path: Path
) -> None:
    """A reloader without ``type`` that only an overlay names (``edit_mode: true``)
    while the fragment defining it is not merged: say where it comes from and how to
    merge it, instead of "missing required key type"."""
    from strictyaml.ruamel.comments import CommentedMap

    from caproni_tasks.config.compose import unmerged_fragment_of

    reloaders = doc.root.get("reloaders") if isinstance(doc.root, CommentedMap) else None
    if not isinstance(reloaders, CommentedMap):
        return
    for name, entry in reloaders.items():
        if not isinstance(entry, CommentedMap) or "type" in entry:
            continue
        found = unmerged_fragment_of(str(name), doc.root, composer.base, composer.read)
        if found is None:
            continue
        repository, fragment = found
        where = doc.locate(("reloaders", name), key=True)
        overlay = overlay_path(main_path)
        message = (
            f"reloader '{name}' comes from {composer.shown(fragment)}, which is merged only "
            f"when `repositories.{repository}.edit_mode: true`; add this line to "
            f"{composer.shown(overlay)}: repositories: {{{repository}: {{edit_mode: true}}}}"
        )
        for index, diagnostic in enumerate(diagnostics):
            if diagnostic.code == "missing-key" and (
                diagnostic.file,
                diagnostic.line,
                diagnostic.column,
            ) == (where.file, where.line, where.column):
                diagnostics[index] = Diagnostic.error(
                    where.file, where.line, where.column, "fragment-not-merged", message
                )


def _root() -> Any:
    from caproni_tasks.config.schema import ROOT

    return ROOT


@functools.cache
def _fragment_root() -> Any:
    """The top level of a fragment checked alone: as the main file's, but ``version`` is
    not required (fragments and extended files have none)."""
    from caproni_tasks.config.spec import Field

    root = _root()
    fields = dict(root.fields)
    fields["version"] = Field(fields["version"].node)
    return dataclasses.replace(root, fields=fields)


def _expand_variables(data: dict[str, Any], builder: Any, env: Mapping[str, str]) -> None:
    """``variables:`` values with the environment expanded (shell style), in place;
    a failure is an error at the value, carrying its message."""
    from caproni_tasks.config.shellvars import ShellVarError, expand_shell

    raw = data.get("variables")
    if not isinstance(raw, dict):
        return
    for key, value in list(raw.items()):
        if not isinstance(value, str):
            continue
        try:
            raw[key] = expand_shell(value, env)
        except ShellVarError as exc:
            where = builder._reference_at(("variables", key), value, exc.offset, 2)
            builder.error(where, "variable-expansion", f"variable {key}: {exc}")


def _hooks(data: dict[str, Any], builder: Any, layers: list[Any]) -> tuple[LifecycleHook, ...]:
    """Top-level lifecycle hooks, each with the directory of the file that declares it."""
    from caproni_tasks.config.expand import expand_runtimevars

    raw = data.get("lifecycle_hooks")
    if not isinstance(raw, list):
        return ()
    directories = {layer.parsed.name: layer.directory for layer in layers}
    hooks: list[LifecycleHook] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        where = builder.at(("lifecycle_hooks", index))
        path = ("lifecycle_hooks", index, "script")
        template, runtimevars = builder.expand(str(entry["script"]), path)
        if runtimevars:
            builder.error(
                builder.at(path),
                "bad-reference",
                "runtime variables cannot be used in lifecycle hooks (they run before the "
                "variables are watched)",
            )
            continue
        try:
            script = expand_runtimevars(template, {})
        except (KeyError, ValueError):
            continue  # already reported by expand
        hooks.append(
            LifecycleHook(
                type=str(entry["type"]),
                script=script,
                directory=directories.get(where.file, builder.path.parent),
                location=where,
            )
        )
    return tuple(hooks)


def _elsewhere(diagnostic: Diagnostic, name: str) -> Diagnostic:
    """In a fragment checked alone, a repository of the main file is not a mistake."""
    if diagnostic.code != "unknown-repository":
        return diagnostic
    found = re.search(r"unknown repository '([^']*)'", diagnostic.message)
    repository = found.group(1) if found else "?"
    return Diagnostic(
        diagnostic.file,
        diagnostic.line,
        diagnostic.column,
        Severity.NOTICE,
        "repository-elsewhere",
        f"repository '{repository}' is not defined in {name}: it must be defined in the "
        "caproni.yaml whose edit mode merges this fragment",
    )


def _read(path: Path, name: str, result: LoadResult, *, required: bool) -> str | None:
    try:
        return read_regular_text(path)
    except FileNotFoundError:
        if required:
            result.diagnostics.append(
                Diagnostic.error(
                    name, 0, 0, "file-not-found", "no such file: create it or pass --config"
                )
            )
    except IsADirectoryError:
        result.diagnostics.append(
            Diagnostic.error(name, 0, 0, "unreadable", "is a directory, not a config file")
        )
    except UnicodeDecodeError as exc:
        data = bytes(exc.object)
        line, column = _byte_position(data, exc.start)
        result.diagnostics.append(
            Diagnostic.error(
                name,
                line,
                column,
                "unreadable",
                f"not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason}); "
                "save the file as UTF-8",
            )
        )
    except OSError as exc:
        result.diagnostics.append(
            Diagnostic.error(name, 0, 0, "unreadable", f"cannot read the file: {exc.strerror}")
        )
    return None


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte *offset* of undecodable *data*."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", errors="replace")
    return data.count(b"\n", 0, offset) + 1, len(prefix) + 1


def _ignored_notice(doc: Any, result: LoadResult) -> tuple[str, ...]:
    """One notice per file holding cluster-management sections, naming the file."""
    from caproni_tasks.config.schema import IGNORED_KEYS

    present = [key for key in doc.root if key in IGNORED_KEYS]
    by_file: dict[str, list[str]] = {}
    for key in present:
        by_file.setdefault(doc.locate((key,), key=True).file, []).append(key)
    messages: list[str] = []
    for file, keys in by_file.items():
        listed = ", ".join(f"'{key}'" for key in keys)
        message = (
            f"ignoring {listed} in {file}: cluster management is not part of caproni-tasks; "
            "only repositories, reloaders, variables and lifecycle hooks are used"
        )
        where = doc.locate((keys[0],), key=True)
        result.diagnostics.append(
            Diagnostic(
                where.file, where.line, where.column, Severity.NOTICE, "ignored-section", message
            )
        )
        messages.append(message)
    return tuple(messages)
