"""Several processes in one group (issue 25): the throughput window starts at the last poll
before the group had all its members, so one member working alone and the rebalance the next
one's join causes are start-up, as a single process's group join is."""

from __future__ import annotations

from benchmarks.contenders import BY_NAME
from benchmarks.measured_window import group_start, sustained

# (time s, outputs, cpu s): one member alone at 70k/s, a 0.3 s stall (the rebalance), then two
SAMPLES = [(0.0, 0, 0.0), (0.1, 7_000, 0.1), (0.2, 14_000, 0.2), (0.5, 14_000, 0.25), (0.6, 24_000, 0.4),
           (0.7, 34_000, 0.55), (0.8, 44_000, 0.7), (0.9, 50_000, 0.8)]  # fmt: skip


def test_the_window_starts_at_the_last_poll_before_the_group_was_complete() -> None:
    skip = group_start(SAMPLES, ready_at=0.55, expected=50_000)
    assert skip == 3  # the poll at 0.5 s, the last before 0.55
    whole = sustained(SAMPLES, 50_000)
    after = sustained(SAMPLES[skip:], 50_000)
    assert round(after["throughput_eps"]) == 100_000  # (44,000 - 14,000) / 0.3 s: both members
    assert after["throughput_eps"] > whole["throughput_eps"]  # the stall and the lone member are out


def test_no_group_or_a_group_complete_after_the_output_leaves_the_window_as_it_was() -> None:
    assert group_start(SAMPLES, ready_at=None, expected=50_000) == 0
    assert group_start(SAMPLES, ready_at=5.0, expected=50_000) == 0  # all out before it was


def test_the_processes_entries_wait_for_two_members_and_the_others_for_one() -> None:
    assert BY_NAME["engine_forward_p2"].members == BY_NAME["engine_fraud_p2"].members == 2
    assert BY_NAME["engine_forward"].members == BY_NAME["aiokafka_batch"].members == 1
