"""The ``caproni-tasks`` console script: an invoke `Program` over the same namespace.

``caproni-tasks ensure`` is ``invoke ensure`` without a ``tasks.py``: the tasks are
this package's, settings come from ``invoke.yaml`` (and the other invoke config files)
in the current directory and from ``INVOKE_CAPRONI_*`` environment variables, and
relative settings resolve against the current directory. A project's own ``tasks.py``
is neither read nor needed; ``invoke`` keeps running it as before.
``python -m caproni_tasks`` is the same program.

Exit codes: 0 ok, 1 problems found or the job failed, 2 usage errors (an unknown task
or flag, a missing or bad flag value, missing config).
"""

from __future__ import annotations

import os
import re
import sys

from invoke.exceptions import Exit, ParseError
from invoke.program import Program

from caproni_tasks import __version__

__all__ = ["CaproniProgram", "main"]

#: The name of the console script (the package's name: it never shadows another tool).
SCRIPT = "caproni-tasks"


class CaproniProgram(Program):
    """invoke's `Program` over `caproni_tasks.namespace()`, with usage errors exiting 2."""

    def __init__(self, hint_name: str = SCRIPT) -> None:
        from caproni_tasks.tasks import build_namespace

        super().__init__(
            version=__version__,
            namespace=build_namespace(),
            name=SCRIPT,
            binary=SCRIPT,
            binary_names=[SCRIPT],
        )
        #: How hints name this program (``caproni-tasks ensure.resolve``).
        self.hint_name = hint_name

    def create_config(self) -> None:
        super().create_config()
        # No tasks.py to locate the project: the current directory is the project.
        self.config.set_project_location(os.getcwd())
        self.config.load_project()

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as exc:
            raise Exit(str(exc), 2) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(_usage(str(exc)), 2) from None

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as exc:
            raise Exit(_usage(str(exc)), 2) from None


_NO_VALUE = re.compile(r"Flag <Argument: ([^>]+)> needed value and was not given one!")


def _usage(message: str) -> str:
    """invoke's parse error as one line in our words, with where to look."""
    match = _NO_VALUE.fullmatch(message)
    if match:
        names = match.group(1).split(" (")[0]
        message = f"--{names.split(',')[0].strip()} needs a value"
    return f"{message} (see '{SCRIPT} --list' and '{SCRIPT} --help TASK')"


def main(argv: list[str] | None = None, *, hint_name: str = SCRIPT) -> None:
    """Run the console script (``argv`` like `sys.argv`; default: the real one)."""
    try:
        CaproniProgram(hint_name).run(argv if argv is not None else sys.argv)
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        sys.exit(1)
