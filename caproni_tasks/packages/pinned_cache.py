"""Remember what a pinned ensure file resolves to, so a no-op `invoke ensure` parses nothing.

With ``$ResolvedVersions`` an ensure file's meaning on a machine depends only on its own
bytes, the versions file's bytes and the host platform: no repository is asked. The
first run records the resolved packages under the user cache directory, keyed by
those; a later run whose files are byte-for-byte the same reads that record instead
of importing the parser (lark) and resolving again. A record is only an optimisation:
anything unreadable or stale is ignored and the files are parsed as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from caproni_tasks.atomicfile import write_atomic
from caproni_tasks.userfiles import read_regular_file

__all__ = ["PinnedRun", "lookup", "remember", "versions_digest"]

_FORMAT = 1


@dataclass(frozen=True)
class PinnedRun:
    """The packages a pinned ensure file asks for here: ``(subdir, package, instance
    ID)`` triples, and its ``$ParanoidMode`` (None when not set)."""

    desired: tuple[tuple[str, str, str], ...]
    paranoid_mode: str | None


def _directory() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("caproni-tasks")) / "pinned"


def _key(ensure_path: Path, ensure_bytes: bytes) -> str:
    from caproni_tasks import __version__

    machine = os.uname().machine if hasattr(os, "uname") else ""
    digest = hashlib.sha256()
    for part in (__version__, str(ensure_path), sys.platform, machine):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(ensure_bytes)
    return digest.hexdigest()


def lookup(ensure_path: Path) -> PinnedRun | None:
    """The recorded resolution of ``ensure_path`` if its files have not changed."""
    try:
        ensure_bytes = read_regular_file(ensure_path)
        record = json.loads((_directory() / f"{_key(ensure_path, ensure_bytes)}.json").read_bytes())
        if record.get("format") != _FORMAT:
            return None
        versions = read_regular_file(record["versions"])
        if hashlib.sha256(versions).hexdigest() != record["versions_sha256"]:
            return None
        desired = tuple((str(s), str(p), str(i)) for s, p, i in record["desired"])
        mode = record.get("paranoid_mode")
        return PinnedRun(desired, mode if isinstance(mode, str) else None)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def versions_digest(versions_path: Path) -> str | None:
    """The SHA-256 of the versions file now (None if unreadable): taken before and
    after resolving, so a record is only made of a file that did not change meanwhile."""
    try:
        return hashlib.sha256(read_regular_file(versions_path)).hexdigest()
    except OSError:
        return None


def remember(
    ensure_path: Path,
    ensure_text: str,
    versions_path: Path,
    versions_sha256: str,
    desired: tuple[tuple[str, str, str], ...],
    paranoid_mode: str | None,
) -> None:
    """Record a resolution (best effort: a cache that cannot be written is not used).

    ``ensure_text`` is what was parsed and ``versions_sha256`` the versions file's
    digest before resolving; nothing is recorded if either file differs now.
    """
    with contextlib.suppress(OSError, ValueError):
        ensure_bytes = read_regular_file(ensure_path)
        text = ensure_bytes.decode("utf-8")
        if text.replace("\r\n", "\n").replace("\r", "\n") != ensure_text:
            return
        if versions_digest(versions_path) != versions_sha256:
            return
        record = {
            "format": _FORMAT,
            "versions": str(versions_path),
            "versions_sha256": versions_sha256,
            "desired": [list(d) for d in desired],
            "paranoid_mode": paranoid_mode,
        }
        directory = _directory()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = directory / f"{_key(ensure_path, ensure_bytes)}.json"
        write_atomic(target, json.dumps(record), mode=0o600, durable=False)
