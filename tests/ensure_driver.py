"""Run one `Installer.ensure` in its own process, for the random-kill probe.

``python tests/ensure_driver.py ROOT CACHE REPO DESIRED_JSON`` where DESIRED_JSON is a
list of ``[package, instance_id]``. Exits 0 when the root matches. Nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.installer import Desired, Installer


def main() -> None:
    root, cache, repo_dir, desired = sys.argv[1:]
    repo = LocalRepository(Path(repo_dir))
    installer = Installer(Path(root), InstanceCache(Path(cache)), lambda: repo, jobs=2)
    wanted = [Desired("", package, iid) for package, iid in json.loads(desired)]
    installer.ensure(wanted)


if __name__ == "__main__":
    main()
