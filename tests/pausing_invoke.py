"""Run ``invoke`` with the installer stopping at one checkpoint: a test-only harness.

``python tests/pausing_invoke.py POINT MARKER [invoke args…]`` sets
`Installer.default_checkpoint` so that a run reaching ``POINT`` writes its pid to the
file ``MARKER`` and waits while that file exists. A test then SIGKILLs the run there, or
deletes the marker to let it go on. Production code has no knowledge of this file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _pause_at(point: str, marker: Path) -> None:
    from caproni_tasks.packages.installer import Installer

    def checkpoint(reached: str) -> None:
        if reached != point:
            return
        marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
        while marker.exists():
            time.sleep(0.02)

    Installer.default_checkpoint = staticmethod(checkpoint)


def main() -> None:
    point, marker, *args = sys.argv[1:]
    _pause_at(point, Path(marker))
    from invoke.main import program

    program.run(["invoke", *args])


if __name__ == "__main__":
    main()
