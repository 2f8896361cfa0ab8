"""Burrow-style status rules, driven by plain observation sequences."""

from __future__ import annotations

import pytest

from stream_orch.observability.status import Observation, Status, StatusEvaluator, evaluate_partition, worst


def seq(*triples: tuple[int, int, float]) -> list[Observation]:
    return [Observation(o, lag, ts) for o, lag, ts in triples]


def test_zero_current_lag_is_ok_whatever_the_window() -> None:
    stuck_long_ago = seq((5, 3, 0), (5, 3, 10))
    assert evaluate_partition(stuck_long_ago, current_lag=0, now=10_000) is Status.OK


def test_no_window_or_one_fresh_commit_has_no_status_yet() -> None:
    assert evaluate_partition([], current_lag=5, now=100) is None
    assert evaluate_partition(seq((5, 5, 99)), current_lag=5, now=100) is None


def test_stop_when_last_commit_older_than_window_span() -> None:
    window = seq((10, 5, 0), (20, 5, 10), (30, 5, 20))  # span 20 s
    assert evaluate_partition(window, 5, now=41, min_stop_seconds=1) is Status.STOP
    assert evaluate_partition(window, 5, now=39, min_stop_seconds=1) is not Status.STOP


def test_stop_needs_min_stop_seconds_even_for_a_single_commit() -> None:
    window = seq((10, 5, 100))
    assert evaluate_partition(window, 5, now=120, min_stop_seconds=30) is None
    assert evaluate_partition(window, 5, now=131, min_stop_seconds=30) is Status.STOP


def test_stop_wins_over_lag_zero_in_window_like_burrow() -> None:
    window = seq((10, 0, 0), (20, 4, 10))
    assert evaluate_partition(window, 4, now=100, min_stop_seconds=5) is Status.STOP


def test_lag_zero_somewhere_in_window_is_ok() -> None:
    window = seq((10, 3, 0), (20, 0, 10), (30, 8, 20))
    assert evaluate_partition(window, 8, now=21) is Status.OK


def test_rewind_when_offset_goes_backwards() -> None:
    window = seq((100, 5, 0), (120, 5, 10), (50, 80, 20))
    assert evaluate_partition(window, 80, now=21) is Status.REWIND


def test_stall_when_commits_keep_coming_but_offset_never_moves() -> None:
    window = seq((100, 5, 0), (100, 7, 10), (100, 9, 20))
    assert evaluate_partition(window, 9, now=21) is Status.STALL


def test_warn_when_offsets_move_but_lag_never_decreases() -> None:
    growing = seq((100, 5, 0), (110, 9, 10), (120, 9, 20), (130, 15, 30))
    assert evaluate_partition(growing, 15, now=31) is Status.WARN


def test_ok_when_offsets_move_and_lag_shrinks_at_least_once() -> None:
    window = seq((100, 5, 0), (110, 9, 10), (130, 4, 20), (140, 6, 30))
    assert evaluate_partition(window, 6, now=31) is Status.OK


def test_group_status_is_worst_known_partition() -> None:
    assert worst([Status.OK, None, Status.WARN]) is Status.WARN
    assert worst([Status.WARN, Status.STOP, Status.STALL]) is Status.STALL
    assert worst([None, None]) is None
    assert Status.REWIND > Status.STALL > Status.STOP > Status.WARN > Status.OK


def test_evaluator_window_slides_and_forgets_old_problems() -> None:
    ev = StatusEvaluator(window=3, min_stop_seconds=1000)
    key = ("g", "t", 0)
    for i, (off, lag) in enumerate([(100, 5), (50, 60), (60, 50), (70, 40), (80, 30)]):
        ev.observe(key, off, lag, float(i))
        if i == 1:
            assert ev.partition_status(key, lag, now=float(i)) is Status.REWIND
    assert [o.offset for o in ev.window(key)] == [60, 70, 80]  # the rewind slid out
    assert ev.partition_status(key, 30, now=5.0) is Status.OK


def test_observe_poll_only_adds_when_offset_changes() -> None:
    ev = StatusEvaluator(window=5, min_stop_seconds=10)
    key = ("g", "t", 0)
    ev.observe_poll(key, 10, 5, now=0)
    ev.observe_poll(key, 10, 8, now=5)  # same offset: no new commit seen
    ev.observe_poll(key, 20, 8, now=6)
    assert [(o.offset, o.timestamp) for o in ev.window(key)] == [(10, 0), (20, 6)]
    # nothing moves afterwards: the last change ages beyond the window span and min_stop -> STOP
    assert ev.partition_status(key, 12, now=15) is Status.WARN
    assert ev.partition_status(key, 12, now=17) is Status.STOP


def test_observe_ignores_the_same_commit_twice_and_retain_drops_gone_partitions() -> None:
    ev = StatusEvaluator(window=5)
    ev.observe(("g", "t", 0), 10, 1, 5.0)
    ev.observe(("g", "t", 0), 10, 1, 5.0)
    ev.observe(("g", "t", 1), 10, 1, 5.0)
    assert len(ev.window(("g", "t", 0))) == 1
    ev.retain([("g", "t", 1)])
    assert ev.window(("g", "t", 0)) == ()
    assert len(ev.window(("g", "t", 1))) == 1


def test_window_below_two_is_rejected() -> None:
    with pytest.raises(ValueError):
        StatusEvaluator(window=1)
