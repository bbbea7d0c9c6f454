"""The restart policy on its own (reloader/restart.py): verdicts on exits, no processes."""

from __future__ import annotations

from caproni_tasks.reloader.backoff import BackoffPolicy
from caproni_tasks.reloader.restart import Action, Restarter

POLICY = BackoffPolicy(base=0.5, factor=2.0, cap=4.0, healthy_after=60.0)


def test_on_failure_restarts_crashes_with_growing_delays_then_fails() -> None:
    restarter = Restarter("on-failure", max_restarts=3, backoff=POLICY)
    verdicts = [restarter.after_exit(1, ran_for=0.1) for _ in range(4)]
    assert [v.action for v in verdicts] == [Action.RESTART] * 3 + [Action.FAILED]
    assert [v.delay for v in verdicts[:3]] == [0.5, 1.0, 2.0]
    assert verdicts[0].message == "exit 1; restarting in 0.5s" and verdicts[0].error
    assert verdicts[3].message == "exit 1; failed after 3 restarts in a row"
    assert restarter.crashes == 3


def test_a_clean_exit_under_on_failure_or_never_ends_the_process() -> None:
    done = Restarter("on-failure", max_restarts=3, backoff=POLICY).after_exit(0, ran_for=1.0)
    assert (done.action, done.message, done.error) == (Action.EXITED, "exit 0", False)
    never = Restarter("never", max_restarts=3, backoff=POLICY).after_exit(-9, ran_for=1.0)
    assert (never.action, never.message, never.error) == (Action.EXITED, "SIGKILL", True)


def test_always_paces_clean_exits_without_counting_them_as_crashes() -> None:
    restarter = Restarter("always", max_restarts=1, backoff=POLICY)
    verdicts = [restarter.after_exit(0, ran_for=0.0) for _ in range(5)]
    assert all(v.action == Action.RESTART and not v.error for v in verdicts)
    assert [v.delay for v in verdicts] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert restarter.crashes == 0


def test_a_healthy_run_or_a_change_forgives_past_crashes() -> None:
    restarter = Restarter("on-failure", max_restarts=2, backoff=POLICY)
    restarter.after_exit(1, ran_for=0.0)
    restarter.after_exit(1, ran_for=0.0)
    healthy = restarter.after_exit(1, ran_for=60.0)
    assert (healthy.action, healthy.delay) == (Action.RESTART, 0.5)
    restarter.forgive()
    assert restarter.crashes == 0


def test_fatal_exits_fail_at_once_and_say_what_follows() -> None:
    restarter = Restarter(
        "always", max_restarts=5, fatal_exits={127}, backoff=POLICY, waits_for_change=True
    )
    verdict = restarter.after_exit(127, ran_for=0.0)
    assert verdict.action == Action.FAILED and verdict.error
    assert verdict.message == (
        "exit 127 (command not found): its usage is wrong, restarting would not help; "
        "waiting for a change"
    )
    exited = Restarter("never", max_restarts=1, waits_for_change=True).after_exit(0, 0.0)
    assert exited.message == "exit 0; waiting for a change"
