"""The registry and contract: built-in kinds, errors, third-party kinds via entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from caproni_tasks import reloader
from caproni_tasks.reloader import (
    Manager,
    RunFailedError,
    State,
    Status,
    StatusFailedError,
    TargetNotFoundError,
    UnknownTypeError,
    list_types,
    new_manager,
    register,
)
from caproni_tasks.reloader.registry import refresh_plugins


def test_states_are_the_reference_values() -> None:
    assert [s.value for s in State] == ["not-deployed", "not-ready", "ready", "failed"]
    assert Status(State.READY).message == ""
    assert Status(State.NOT_READY, ("a", "b")).message == "a; b"


def test_error_messages_start_with_the_reference_summary() -> None:
    assert str(UnknownTypeError()) == "unknown reloader type"
    assert str(RunFailedError("boom")) == "reloader run failed: boom"
    assert str(StatusFailedError()) == "failed to get reloader status"
    assert str(TargetNotFoundError("deployment/web")) == "target resource not found: deployment/web"


def test_process_kind_is_built_in() -> None:
    assert "process" in list_types()
    manager = new_manager("process")
    assert manager.type == "process"
    assert isinstance(manager, Manager)


def test_unknown_kind_raises_with_the_known_ones() -> None:
    with pytest.raises(UnknownTypeError, match=r"unknown reloader type: 'nope'.*process"):
        new_manager("nope")


def test_list_types_is_sorted_and_register_adds() -> None:
    class Fake:
        type = "zzz-fake"

    register("aaa-fake", Fake)  # type: ignore[arg-type]
    try:
        names = list_types()
        assert names == sorted(names)
        assert "aaa-fake" in names
        assert new_manager("aaa-fake").type == "zzz-fake"
    finally:
        from caproni_tasks.config import kinds

        kinds._kinds.pop("aaa-fake", None)


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    """A fake installed distribution declaring a kind in the entry-point group."""
    package = tmp_path / "fakekind"
    package.mkdir()
    (package / "__init__.py").write_text(
        "LOADED = []\n"
        "class FakeManager:\n"
        "    type = 'fake'\n"
        "    def __init__(self):\n"
        "        LOADED.append(self)\n"
    )
    dist = tmp_path / "fakekind-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakekind\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{reloader.ENTRY_POINT_GROUP}]\nfake = fakekind:FakeManager\nbroken = fakekind:Missing\n"
    )
    sys.path.insert(0, str(tmp_path))
    refresh_plugins()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fakekind", None)
        from caproni_tasks.config import kinds

        kinds._kinds.pop("fake", None)
        refresh_plugins()


def test_third_party_kind_from_entry_point_is_loaded_lazily(plugin_dist: Path) -> None:
    assert "fake" in list_types()
    assert "fakekind" not in sys.modules  # listed without importing it
    manager = new_manager("fake")
    assert manager.type == "fake"
    import fakekind  # type: ignore[import-not-found]

    assert len(fakekind.LOADED) == 1


def test_broken_plugin_is_an_unknown_type_error_not_a_crash(plugin_dist: Path) -> None:
    with pytest.raises(UnknownTypeError, match="could not be loaded"):
        new_manager("broken")
