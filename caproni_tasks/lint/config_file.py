"""caproni.yaml (and its caproni.local.yaml overlay) checked for `invoke lint`.

Lint reports what ``invoke validate`` reports: the loader's diagnostics and, once the
file loads, every reloader kind's own checks. Both only read files.
"""

from __future__ import annotations

from pathlib import Path

from caproni_tasks.diagnostics import Diagnostic

__all__ = ["lint_config_file"]


def lint_config_file(path: Path) -> list[Diagnostic]:
    """Every problem of the config at ``path``, as ``invoke validate`` reports them.

    Given an overlay (``caproni.local.yaml``) whose main file is beside it, the pair
    is checked, since an overlay only means something on top of its main file.
    """
    from caproni_tasks.config.loader import load_config

    main = _main_of_overlay(path)
    result = load_config(main if main is not None else path)
    found = list(result.diagnostics)
    if result.config is not None:
        # Imported here: the reloader package imports the config package, and its
        # kinds register on import, which `invoke --list` need not pay for.
        from caproni_tasks.reloader import validate_reloaders

        found.extend(d for d in validate_reloaders(result.config) if d not in found)
    return found


def _main_of_overlay(path: Path) -> Path | None:
    from caproni_tasks.config.loader import overlay_path

    stem = Path(path.stem)  # "caproni.local" → suffix ".local"
    if stem.suffix != ".local":
        return None
    main = path.with_name(f"{stem.stem}{path.suffix}")
    if main.is_file() and overlay_path(main) == path:
        return main
    return None
