"""Every name a package's ``__all__`` promises can be imported (lazy exports included)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "caproni_tasks",
    "caproni_tasks.packages",
    "caproni_tasks.packages.backends",
    "caproni_tasks.runtimevar",
    "caproni_tasks.ensure",
    "caproni_tasks.config",
    "caproni_tasks.reloader",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == []
