"""``load_config``: caproni.yaml (+ caproni.local.yaml) → `CaproniConfig` or diagnostics.

Never raises for a user's mistake: a missing or unreadable file, bad YAML, schema and
reference errors all come back as `Diagnostic`s with file:line:column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.config.model import CaproniConfig
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
) -> LoadResult:
    """Load from texts already read (``path`` names the main file; nothing is read)."""
    from caproni_tasks.config.build import Builder
    from caproni_tasks.config.cache import cache_key, read_cached, write_cached
    from caproni_tasks.config.schema import ROOT
    from caproni_tasks.config.strict import Checker
    from caproni_tasks.config.yamldoc import Document, parse_yaml

    result = result if result is not None else LoadResult(None)
    name = str(path)
    result.sources[name] = text
    if overlay_text is not None:
        overlay_name = overlay_name or str(overlay_path(Path(path)))
        result.sources[overlay_name] = overlay_text
    key = None
    if cache and not has_errors(result.diagnostics):
        absolute = str(Path(path).absolute())
        key = cache_key([name, absolute, text, overlay_name, overlay_text])
        hit = read_cached(key)
        if hit is not None:
            result.config, found = hit
            result.diagnostics.extend(found)
            return result
    main, problems = parse_yaml(text, name)
    result.diagnostics.extend(problems)
    overlay = None
    if overlay_text is not None and overlay_name is not None:
        overlay, problems = parse_yaml(overlay_text, overlay_name)
        result.diagnostics.extend(problems)
    if main is None or has_errors(result.diagnostics):
        return result
    if main.root is None:
        result.diagnostics.append(
            Diagnostic.error(name, 1, 1, "empty-config", "empty config: start it with 'version: 2'")
        )
        return result

    doc = Document.of(main, overlay)
    checker = Checker(doc)
    data = checker.check_root(ROOT)
    notices = _ignored_notice(doc, result)
    result.diagnostics.extend(checker.diagnostics)
    main_path = Path(path).absolute()
    builder = Builder(
        doc,
        result.sources,
        main_path,
        overlay=main_path.parent / Path(overlay_name).name
        if overlay is not None and overlay_name
        else None,
    )
    config = builder.build(data, notices)
    result.diagnostics.extend(builder.diagnostics)
    files = list(result.sources)
    result.diagnostics.sort(
        key=lambda d: (files.index(d.file) if d.file in files else len(files), d.line, d.column)
    )
    if not has_errors(result.diagnostics):
        result.config = config
        if key is not None:
            write_cached(key, config, result.diagnostics)
    return result


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
    from caproni_tasks.config.schema import IGNORED_KEYS

    present = [key for key in doc.root if key in IGNORED_KEYS]
    if not present:
        return ()
    listed = ", ".join(f"'{key}'" for key in present)
    message = (
        f"ignoring {listed}: cluster management is not part of caproni-tasks; "
        "only repositories, reloaders and variables are used"
    )
    where = doc.locate((present[0],), key=True)
    result.diagnostics.append(
        Diagnostic(
            where.file, where.line, where.column, Severity.NOTICE, "ignored-section", message
        )
    )
    return (message,)
