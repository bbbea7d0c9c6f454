"""Property tests: whatever the reader accepts cannot place anything outside the root."""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from caproni_tasks.packages.format import PackageFormatError, _check_tree, entry_name_problem

components = st.sampled_from(["a", "b", "c", "..", ".", ""])
names = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3).map("/".join)
targets = st.lists(components, min_size=1, max_size=5).map("/".join)


@given(st.lists(st.sampled_from(["a", "..", ".", "", "/", "b\\c", "C:"]), max_size=5))
def test_accepted_names_stay_inside(parts: list[str]) -> None:
    name = "/".join(parts)
    if entry_name_problem(name) is None:
        joined = posixpath.normpath(posixpath.join("/root", name))
        assert joined.startswith("/root/")
        assert joined == "/root/" + name


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, targets, min_size=1, max_size=4))
def test_accepted_symlinks_resolve_inside_the_root(links: dict[str, str]) -> None:
    tree: dict[str, str | None] = dict(links)
    try:
        _check_tree(tree, where="test")
    except PackageFormatError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        for name, target in links.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, path)
        real_root = os.path.realpath(root)
        for name in links:
            resolved = os.path.realpath(root / name)
            assert resolved == real_root or resolved.startswith(real_root + os.sep), (
                name,
                links,
                resolved,
            )
