"""Crash-restart pacing: exponential delays, forgiven after a healthy run.

Restart storms (a crashing process restarted in a tight loop, flooding the terminal and
the CPU) are the classic complaint about reloaders; this bounds them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """``base`` seconds for the first restart, times ``factor`` per further crash, capped
    at ``cap``; a run that lasted ``healthy_after`` seconds resets the sequence."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    healthy_after: float = 60.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1 or self.healthy_after < 0:
            raise ValueError("backoff needs base, cap, healthy_after >= 0 and factor >= 1")


class Backoff:
    """The restart counters of one process and the delay before its next start.

    ``crashes`` counts crash restarts in a row (what ``max_restarts`` limits); ``streak``
    counts every restart since the last healthy run, crash or clean exit, and sets the
    delay — so a process that exits 0 at once under ``restart: always`` is paced like a
    crashing one without ever being declared failed.
    """

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.crashes = 0  # consecutive crash restarts since the last healthy run
        self.streak = 0  # restarts of any kind since the last healthy run

    def record_exit(self, ran_for: float) -> None:
        """Account for an exit after ``ran_for`` seconds of running."""
        if ran_for >= self.policy.healthy_after:
            self.reset()

    def next_delay(self, *, crash: bool = True) -> float:
        """The delay before the next restart; counts it as one more restart, and as one
        more crash restart unless ``crash`` is False (a clean exit)."""
        delay = min(self.policy.cap, self.policy.base * self.policy.factor**self.streak)
        self.streak += 1
        if crash:
            self.crashes += 1
        return delay

    def reset(self) -> None:
        """Forget past restarts (a healthy run, or a deliberate restart: a file or
        variable changed)."""
        self.crashes = 0
        self.streak = 0
