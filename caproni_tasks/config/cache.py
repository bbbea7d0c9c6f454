"""Validated configs cached as JSON, keyed by a hash of everything the result depends on.

strictyaml parses in pure Python and copies its tree often: a 100-line file takes
~20 ms, a 2,800-line one ~0.5 s (bench/bench_config.py). ``run``, ``status`` and
``validate`` each load the file, so a successful load is remembered under the user cache
directory. JSON, not pickle: a planted cache file can at worst describe a config,
never run code, and anything that does not decode into the model exactly is ignored.
The key covers the file texts, their names, the absolute path and this package's
loader and built-in kind sources, so an edit or an upgrade never sees a stale entry.
Settings of the built-in kinds are dataclasses of their units
(``caproni_tasks.reloader.kinds.*``), named by module; configs with third-party kinds
are not cached (see `caproni_tasks.config.build.Builder.cacheable`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caproni_tasks.atomicfile import write_atomic
from caproni_tasks.config import model
from caproni_tasks.diagnostics import Diagnostic, Severity

__all__ = ["cache_dir", "cache_key", "read_cached", "write_cached"]

#: Modules whose dataclasses may be named in a cache entry besides the model's.
KIND_MODULES_PREFIX = "caproni_tasks.reloader.kinds."

#: Entries kept; the least recently written beyond this are removed.
MAX_ENTRIES = 64

_MODEL_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in vars(model).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__
}


def cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("caproni-tasks") / "config"


@functools.cache
def _fingerprint() -> str:
    """A hash of the loader's own sources: a changed loader never reads old entries."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    kinds = here.parent / "reloader" / "kinds"
    for source in [*sorted(here.glob("*.py")), *sorted(kinds.glob("*.py"))]:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def cache_key(parts: list[str | None]) -> str:
    return hashlib.sha256(json.dumps([_fingerprint(), *parts]).encode()).hexdigest()


def read_cached(
    key: str, environ: Mapping[str, str] | None = None
) -> tuple[model.CaproniConfig, list[Diagnostic]] | None:
    """The entry of ``key``, unless a file or environment variable it was built from
    (its recorded ``deps``) is different now."""
    try:
        raw = json.loads((cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
        if not _deps_unchanged(raw.get("deps") or {}, environ):
            return None
        config = _decode(raw["config"])
        diagnostics = [
            Diagnostic(
                str(d["file"]),
                int(d["line"]),
                int(d["column"]),
                Severity(d["severity"]),
                str(d["code"]),
                str(d["message"]),
            )
            for d in raw["diagnostics"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        return None
    if not isinstance(config, model.CaproniConfig):
        return None
    return config, diagnostics


def _deps_unchanged(deps: Mapping[str, Any], environ: Mapping[str, str] | None) -> bool:
    """Every file recorded (path → digest, or None when absent) and every environment
    variable read (name → value, or None when unset) is as it was."""
    from caproni_tasks.config.compose import digest

    environ = os.environ if environ is None else environ
    for name, value in dict(deps.get("env") or {}).items():
        if environ.get(str(name)) != value:
            return False
    for name, expected in dict(deps.get("files") or {}).items():
        try:
            text: str | None = Path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except (OSError, UnicodeDecodeError):
            return False
        if (digest(text) if text is not None else None) != expected:
            return False
    return True


def write_cached(
    key: str,
    config: model.CaproniConfig,
    diagnostics: list[Diagnostic],
    *,
    deps: Mapping[str, Mapping[str, str | None]] | None = None,
) -> None:
    """Best effort: a cache that cannot be written is simply not used. ``deps``: files
    (path → digest or None) and environment variables (name → value or None) the config
    was built from besides the texts in the key; `read_cached` checks them."""
    directory = cache_dir()
    try:
        config_data = _encode(config)
    except TypeError:  # a value of a kind's settings that has no cached form
        return
    payload = {
        "deps": {part: dict(values) for part, values in (deps or {}).items()},
        "config": config_data,
        "diagnostics": [
            {**dataclasses.asdict(d), "severity": d.severity.value} for d in diagnostics
        ],
    }
    try:
        encoded = json.dumps(payload)
    except TypeError:  # a value of a kind's settings that has no cached form
        return
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(directory / f"{key}.json", encoded, mode=0o600, durable=False)
        _prune(directory)
    except OSError:
        pass


def _prune(directory: Path) -> None:
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        cls = type(value)
        if _MODEL_TYPES.get(cls.__name__) is cls:
            return {"$type": cls.__name__, "fields": fields}
        if cls.__module__.startswith(KIND_MODULES_PREFIX):
            return {"$type": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
        raise TypeError(f"cannot cache a {cls.__name__}")
    if isinstance(value, Path):
        return {"$path": str(value)}
    if isinstance(value, frozenset):
        return {"$frozenset": sorted(_encode(v) for v in value)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, Mapping):
        return {"$map": [[str(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise TypeError("unexpected JSON value")
    if "$type" in value:
        cls = _type_named(str(value["$type"]))
        return cls(**{str(k): _decode(v) for k, v in value["fields"].items()})
    if "$path" in value:
        return Path(value["$path"])
    if "$frozenset" in value:
        return frozenset(_decode(v) for v in value["$frozenset"])
    if "$tuple" in value:
        return tuple(_decode(v) for v in value["$tuple"])
    if "$map" in value:
        return {str(k): _decode(v) for k, v in value["$map"]}
    raise ValueError("unknown cached value")


def _type_named(name: str) -> type:
    """A model dataclass, or one of a built-in kind's module (``module:QualName``)."""
    module, colon, qualname = name.partition(":")
    if not colon:
        return _MODEL_TYPES[name]
    if not module.startswith(KIND_MODULES_PREFIX) or "." in qualname:
        raise ValueError("unknown cached type")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError("unknown cached type")
    return cls
