"""What follows a process's exit: restart after a delay, or stay ended (exited or failed).

The rules, per process: ``restart`` (``always``, ``on-failure``, ``never``) says which
exits restart it; a crash (a non-zero exit) restarts at most ``max_restarts`` times in a
row, paced by the `Backoff`; an exit in ``fatal_exits`` (a usage error) fails at once.
A clean exit restarted by ``always`` is paced too but never counts as a crash. No
process, no clock, no I/O here: the supervisor acts on the verdicts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from caproni_tasks.config.model import RestartPolicy
from caproni_tasks.reloader.backoff import Backoff, BackoffPolicy
from caproni_tasks.reloader.child import describe_exit

__all__ = ["Action", "Restarter", "Verdict"]


class Action(StrEnum):
    RESTART = "restart"  # after `Verdict.delay` seconds (or at once on a change)
    EXITED = "exited"  # its policy does not restart it
    FAILED = "failed"  # a usage error, or too many crashes in a row


@dataclass(frozen=True)
class Verdict:
    action: Action
    #: The line that tells the user (``exit 1; restarting in 0.5s``).
    message: str
    #: Whether that line is shown as an error.
    error: bool
    delay: float = 0.0


class Restarter:
    """The restart policy of one process and its counters across restarts.

    ``waits_for_change``: a change (a watched file, a runtime variable) can restart the
    process after it ended; the messages say it waits for one.
    """

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        max_restarts: int,
        fatal_exits: Collection[int] = (),
        backoff: BackoffPolicy | None = None,
        waits_for_change: bool = False,
    ) -> None:
        self.policy = policy
        self.max_restarts = max_restarts
        self.fatal_exits = frozenset(fatal_exits)
        self.backoff = Backoff(backoff or BackoffPolicy())
        self.waits_for_change = waits_for_change

    @property
    def crashes(self) -> int:
        """Crash restarts in a row since the last healthy run or change."""
        return self.backoff.crashes

    def forgive(self) -> None:
        """Forget past restarts: a deliberate restart (something changed)."""
        self.backoff.reset()

    def after_exit(self, code: int | None, ran_for: float) -> Verdict:
        """The verdict on an exit with status ``code`` after ``ran_for`` seconds of
        running; a restart verdict counts as one more restart (and crash)."""
        self.backoff.record_exit(ran_for)
        wants_restart = self.policy == "always" or (self.policy == "on-failure" and code != 0)
        crash = code != 0
        waiting = "; waiting for a change" if self.waits_for_change else ""
        if code is not None and code in self.fatal_exits:
            return Verdict(
                Action.FAILED,
                f"{describe_exit(code)}: its usage is wrong, restarting would not help{waiting}",
                error=True,
            )
        if wants_restart and (not crash or self.backoff.crashes < self.max_restarts):
            delay = self.backoff.next_delay(crash=crash)
            return Verdict(
                Action.RESTART,
                f"{describe_exit(code)}; restarting in {delay:.3g}s",
                error=code != 0,
                delay=delay,
            )
        if wants_restart:
            return Verdict(
                Action.FAILED,
                f"{describe_exit(code)}; failed after {self.backoff.crashes} restarts in a row"
                + waiting,
                error=True,
            )
        return Verdict(
            Action.EXITED, f"{describe_exit(code)}{waiting}", error=code not in (0, None)
        )
