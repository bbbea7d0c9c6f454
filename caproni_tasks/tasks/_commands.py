"""Hints that name the command the user can type.

Messages and docstrings are written as ``invoke ensure.resolve``. When the namespace
is composed under a prefix (``ns.add_collection(caproni_tasks.namespace(), "dev")``)
the user types ``invoke dev.ensure.resolve``; with the console script,
``caproni-tasks ensure.resolve``. `say` rewrites a text accordingly, for the program
and namespace that are running.

invoke hands a task nothing but its context, so the running program and the task being
run are found on the call stack (the `Program` and `Executor` frames that are running
it); a task called from plain Python, with neither, keeps ``invoke <task>``. The
prefix is where the task object sits in the program's collection tree (invoke keeps
task objects when it copies a collection), minus the sub-collection it belongs to in
our namespace (``ensure``, ``pkg`` or none).

Tasks of the namespace are `HintedTask` copies; they also keep the ``--json`` promise:
a task run with ``--json`` (or ``--format json``) prints JSON when it fails, too.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from types import FrameType
from typing import Any

from invoke.collection import Collection
from invoke.parser.argument import Argument
from invoke.tasks import Task

__all__ = ["HintedTask", "OptionalPositional", "hinted", "say"]


class HintedTask(Task[Any]):
    """A task of our namespace: it knows its sub-collection (``home``) and shows its
    docstring with the commands rewritten for the running program."""

    home: str = ""
    _raw_doc: str | None = None

    @property
    def __doc__(self) -> str | None:
        raw = self._raw_doc
        return say(raw, self) if raw else raw

    @__doc__.setter
    def __doc__(self, value: str | None) -> None:
        self._raw_doc = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task; with ``--json`` (or ``--format json``) a failure is JSON too.

        The failure's one-line message still goes to stderr and the exit code is kept;
        stdout gets ``{"error": …, "error_code": …, "exit_code": …}`` so a script reading
        JSON always reads JSON. Tasks that print their own JSON error exit without a
        message and are left alone.
        """
        from invoke.exceptions import Exit

        try:
            return super().__call__(*args, **kwargs)
        except Exit as stop:
            wants_json = (
                kwargs.get("json") is True
                or kwargs.get("json_") is True
                or kwargs.get("format") == "json"
            )
            if wants_json and stop.code and stop.message:
                import json

                message = str(stop.message).removeprefix("error: ")
                kind = "usage_error" if stop.code == 2 else "error"
                sys.stdout.write(
                    json.dumps({"error": message, "error_code": kind, "exit_code": stop.code})
                    + "\n"
                )
                sys.stdout.flush()
            raise

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        """invoke's arguments, with those named in the task's ``optional_positional``
        attribute made optional positionals (``invoke logs [NAME]``)."""
        arguments = super().get_arguments(ignore_unknown_help)
        optional = getattr(self, "optional_positional", ())
        for argument in arguments:
            if argument.name in optional:
                argument.__class__ = OptionalPositional
        return arguments


class OptionalPositional(Argument):
    """A positional argument that may be left out.

    invoke's parser asks one question, "is this positional missing?" (its value is
    None), both when a word arrives (then it takes the word) and when the task's
    arguments end (then it is an error). This argument says "missing" to the first and
    "given" to the second, so a word fills it and no word leaves its default.
    """

    @property
    def value(self) -> Any:
        value = super().value
        if value is None and _asked_by("complete_context"):
            return ""
        return value

    @value.setter
    def value(self, arg: Any) -> None:
        self.set_value(arg, cast=True)


def _asked_by(function: str, depth: int = 4) -> bool:
    """Whether ``function`` is among the ``depth`` callers of the caller."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def hinted(task: Task[Any], home: str) -> HintedTask:
    """A copy of ``task`` (shared module-level tasks stay untouched) for our namespace."""
    twin = copy.copy(task)
    twin.__class__ = HintedTask
    assert isinstance(twin, HintedTask)
    twin._raw_doc = task.__doc__
    twin.home = home
    return twin


def say(text: str, task: Task[Any] | None = None) -> str:
    """``text`` with every ``invoke <our task>`` replaced by what the user types now.

    ``task`` is the task whose place decides the prefix (default: the task running).
    """
    if "invoke " not in text:
        return text
    program, executor, call = _running()
    root = getattr(program, "collection", None) or getattr(executor, "collection", None)
    if task is None and call is not None:
        task = call.task
    prefix = ""
    if isinstance(root, Collection):
        prefix = _prefix(root, task)
    command = _command_name(program)
    if command == "invoke" and not prefix:
        return text
    return _pattern().sub(lambda m: f"{command} {prefix}{m.group(1)}", text)


def _running() -> tuple[Any, Any, Any]:
    """The innermost invoke `Program`, `Executor` and `Call` on the stack, if any."""
    from invoke.executor import Executor
    from invoke.program import Program
    from invoke.tasks import Call

    program = executor = call = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and program is None:
        owner = frame.f_locals.get("self")
        if executor is None and isinstance(owner, Executor):
            executor = owner
            found = frame.f_locals.get("call")
            call = found if isinstance(found, Call) else None
        elif isinstance(owner, Program):
            program = owner
        frame = frame.f_back
    return program, executor, call


def _command_name(program: Any) -> str:
    if program is None:
        return "invoke"
    hint = getattr(program, "hint_name", None)
    if isinstance(hint, str) and hint:
        return hint
    called = str(program.called_as or "")
    names = [str(n) for n in (program.binary_names or [])]
    if called in names:
        return called
    return names[0] if names and names[0] else "invoke"


def _prefix(root: Collection, task: Task[Any] | None) -> str:
    """``"dev."`` when our tasks sit under ``dev`` in ``root``; ``""`` at the top."""
    found = _find(root, [], task) if task is not None else None
    if found is None:
        found = _find(root, [], None)
    if found is None:
        return ""
    path, home = found
    parts = path[: len(path) - len(home.split("."))] if home else path
    return "".join(f"{part}." for part in parts)


def _find(
    collection: Collection, path: list[str], wanted: Task[Any] | None
) -> tuple[list[str], str] | None:
    for task in collection.tasks.values():
        if isinstance(task, HintedTask) and (wanted is None or task is wanted):
            return path, task.home
    for name, sub in collection.collections.items():
        found = _find(sub, [*path, name], wanted)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern[str]:
    """``invoke <task path>`` for every task path of our namespace (longest first)."""
    from caproni_tasks.tasks import build_namespace

    names = sorted(set(_paths(build_namespace(), "")), key=len, reverse=True)
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"\binvoke ({alternatives})(?![\w.-])")


def _paths(collection: Collection, prefix: str) -> Iterable[str]:
    for name in collection.tasks:
        yield prefix + name
    if prefix and collection.default:
        yield prefix.rstrip(".")
    for name, sub in collection.collections.items():
        yield from _paths(sub, f"{prefix}{name}.")
