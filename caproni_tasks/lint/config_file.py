"""caproni.yaml (and its caproni.local.yaml overlay) checked for `invoke lint`."""

from __future__ import annotations

from pathlib import Path

from caproni_tasks.diagnostics import Diagnostic

__all__ = ["lint_config_file"]


def lint_config_file(path: Path) -> list[Diagnostic]:
    """Every problem of the config at ``path``, as `load_config` reports them.

    Given an overlay (``caproni.local.yaml``) whose main file is beside it, the pair
    is checked, since an overlay only means something on top of its main file.
    """
    from caproni_tasks.config.loader import load_config

    main = _main_of_overlay(path)
    return load_config(main if main is not None else path).diagnostics


def _main_of_overlay(path: Path) -> Path | None:
    from caproni_tasks.config.loader import overlay_path

    stem = Path(path.stem)  # "caproni.local" → suffix ".local"
    if stem.suffix != ".local":
        return None
    main = path.with_name(f"{stem.stem}{path.suffix}")
    if main.is_file() and overlay_path(main) == path:
        return main
    return None
