"""``python -m caproni_tasks``: the ``caproni-tasks`` console script."""

from __future__ import annotations

import sys

from caproni_tasks.cli import main

if __name__ == "__main__":
    main([sys.executable, *sys.argv[1:]], hint_name="python -m caproni_tasks")
