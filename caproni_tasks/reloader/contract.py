"""What every reloader kind promises: the `Manager` protocol, its states and errors.

A *reloader* runs one service's development processes with hot reload; a *kind*
(``process``, ``mirror``, ``skaffold``, or a third party's) decides how. The task layer
only ever talks to kinds through this contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig, ReloaderSpec
    from caproni_tasks.diagnostics import Diagnostic
    from caproni_tasks.reloader.description import ProcessHost

__all__ = [
    "Manager",
    "ReloaderError",
    "RunFailedError",
    "State",
    "Status",
    "StatusFailedError",
    "TargetNotFoundError",
    "UnknownTypeError",
]


class State(StrEnum):
    """Whether a reloader can run, as ``invoke status`` shows it."""

    NOT_DEPLOYED = "not-deployed"  # the target workload does not exist (cluster kinds)
    NOT_READY = "not-ready"  # cannot run yet: repository not cloned, tool missing, …
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Status:
    """A reloader's state and, when it is not `READY`, why (one line per reason)."""

    state: State
    reasons: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)


class ReloaderError(Exception):
    """Base of the reloader errors: the message starts with the kind of failure."""

    summary = "reloader error"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.summary}: {detail}" if detail else self.summary)


class UnknownTypeError(ReloaderError):
    summary = "unknown reloader type"


class RunFailedError(ReloaderError):
    summary = "reloader run failed"


class StatusFailedError(ReloaderError):
    summary = "failed to get reloader status"


class TargetNotFoundError(ReloaderError):
    summary = "target resource not found"


@runtime_checkable
class Manager(Protocol):
    """One reloader kind. Instances are cheap; `new_manager` makes one per use."""

    @property
    def type(self) -> str:
        """The kind name as written in ``type:``."""
        ...

    async def run(self, reloader: ReloaderSpec, config: CaproniConfig, host: ProcessHost) -> None:
        """Set up, hand `ProcessDescription`s to ``host.supervise`` and block until
        cancelled.

        Undoes its setup on the way out (cancellation included). Raises `RunFailedError`
        when the processes cannot start (e.g. the repository is not cloned) and, for
        cluster kinds, `TargetNotFoundError`.
        """
        ...

    def status(self, reloader: ReloaderSpec, config: CaproniConfig) -> Status:
        """Can this reloader run here, now? Raises `StatusFailedError` when unknown."""
        ...

    def validate(self, reloader: ReloaderSpec, config: CaproniConfig) -> list[Diagnostic]:
        """Every problem at once, without side effects. Files inside repositories that
        are not cloned yet are not problems."""
        ...
