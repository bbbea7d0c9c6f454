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
    """The consecutive-crash counter of one process and the delay before its next start."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.crashes = 0  # consecutive crash restarts since the last healthy run

    def record_exit(self, ran_for: float) -> None:
        """Account for an exit after ``ran_for`` seconds of running."""
        if ran_for >= self.policy.healthy_after:
            self.crashes = 0

    def next_delay(self) -> float:
        """The delay before the next restart; counts it as one more crash restart."""
        delay = min(self.policy.cap, self.policy.base * self.policy.factor**self.crashes)
        self.crashes += 1
        return delay

    def reset(self) -> None:
        """Forget past crashes (a deliberate restart: a file or variable changed)."""
        self.crashes = 0
