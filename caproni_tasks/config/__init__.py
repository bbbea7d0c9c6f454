"""caproni.yaml → frozen, typed values, with every problem as a located `Diagnostic`.

The only package that imports strictyaml (lazily). Public API::

    result = load_config(Path("caproni.yaml"))   # never raises for user mistakes
    result.config        # CaproniConfig, or None when a diagnostic is an error
    result.diagnostics   # errors, warnings and notices with file:line:column
    command, env = process.render(runtimevar_values)   # or expand_runtimevars(text, values)
"""

from __future__ import annotations

from caproni_tasks.config.expand import TemplateError, expand_runtimevars
from caproni_tasks.config.loader import LoadResult, load_config, load_text, overlay_path
from caproni_tasks.config.model import (
    CaproniConfig,
    KindSettings,
    LifecycleHook,
    Location,
    ProcessRef,
    ProcessSpec,
    ReadyCheck,
    ReloaderSpec,
    RepositorySpec,
    RestartPolicy,
    RuntimeVarSpec,
)

__all__ = [
    "CaproniConfig",
    "KindSettings",
    "LifecycleHook",
    "LoadResult",
    "Location",
    "ProcessRef",
    "ProcessSpec",
    "ReadyCheck",
    "ReloaderSpec",
    "RepositorySpec",
    "RestartPolicy",
    "RuntimeVarSpec",
    "TemplateError",
    "expand_runtimevars",
    "load_config",
    "load_text",
    "overlay_path",
]
