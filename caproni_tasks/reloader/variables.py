"""Runtime variables for the session: each opened once, its value kept as text, and the
processes that reference it told when it changes.

Values reach commands and environments as text: strings as they are, bytes decoded as
UTF-8, other values (a ``jsonmap`` dict, a list) as JSON. Logs name the variable, never
its value — values may be secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from caproni_tasks.reloader.aio import cancel_and_wait

if TYPE_CHECKING:
    from caproni_tasks.config.model import RuntimeVarSpec

__all__ = ["VariableHub", "value_text"]

ChangeCallback = Callable[[str], None]
ErrorCallback = Callable[[str, str], None]


def value_text(value: Any) -> str:
    """How a decoded value is written into a command or an environment variable."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class _Slot:
    def __init__(self) -> None:
        self.text: str | None = None
        self.good = asyncio.Event()
        self.last_error: str | None = None
        self.subscribers: list[ChangeCallback] = []
        self.task: asyncio.Task[None] | None = None
        self.variable: Any = None


class VariableHub:
    """Opens variables on first use; ``on_error(name, message)`` hears about bad states
    (the last good value stays in use; the message says so, or that there is none yet)."""

    def __init__(
        self,
        specs: Mapping[str, RuntimeVarSpec],
        *,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.on_error = on_error
        self._slots: dict[str, _Slot] = {}
        self._closed = False

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            if name not in self.specs:
                raise KeyError(name)
            slot = self._slots[name] = _Slot()
            slot.task = asyncio.create_task(self._follow(name, slot), name=f"runtimevar {name}")
        return slot

    def subscribe(self, names: Iterable[str], callback: ChangeCallback) -> None:
        for name in names:
            self._slot(name).subscribers.append(callback)

    def unsubscribe(self, names: Iterable[str], callback: ChangeCallback) -> None:
        for name in names:
            slot = self._slots.get(name)
            if slot is not None and callback in slot.subscribers:
                slot.subscribers.remove(callback)

    def pending(self, names: Iterable[str]) -> list[str]:
        """Names among ``names`` that have no good value yet."""
        return [n for n in names if self._slot(n).text is None]

    async def values(self, names: Iterable[str]) -> dict[str, str]:
        """Current text of each variable, waiting until all of them have a good value."""
        wanted = list(names)
        for name in wanted:
            await self._slot(name).good.wait()
        return {name: self._slot(name).text or "" for name in wanted}

    def _report(self, name: str, slot: _Slot, message: str) -> None:
        if message != slot.last_error:
            slot.last_error = message
            if self.on_error is not None:
                what_now = (
                    "keeping its last good value"
                    if slot.text is not None
                    else "the processes that use it wait until it has a good value"
                )
                self.on_error(name, f"{message} ({what_now})")

    async def _follow(self, name: str, slot: _Slot) -> None:
        from caproni_tasks.runtimevar import VariableError, open_variable

        spec = self.specs[name]
        try:
            slot.variable = open_variable(spec.url, base_dir=spec.base_dir)
        except (VariableError, ValueError, OSError) as exc:
            self._report(name, slot, f"cannot open {spec.url}: {exc}")
            return
        # Error states arrive as items; iteration ends when the variable is closed.
        async for item in slot.variable.changes_async(errors="yield"):
            if isinstance(item, VariableError):
                self._report(name, slot, str(item))
            else:
                self._accept(name, slot, value_text(item.value))

    def _accept(self, name: str, slot: _Slot, text: str) -> None:
        slot.last_error = None
        if text == slot.text:
            return
        first = slot.text is None
        slot.text = text
        slot.good.set()
        if not first:
            for callback in list(slot.subscribers):
                callback(name)

    async def close(self) -> None:
        self._closed = True
        for slot in self._slots.values():
            if slot.variable is not None:
                with contextlib.suppress(Exception):
                    await slot.variable.close_async()
        await cancel_and_wait(*(slot.task for slot in self._slots.values()))
