"""The batch-size sweep on made-up cost curves."""

from __future__ import annotations

import pytest

from gonka_cli.bench.tuner import batch_candidates, tune_batch_size
from gonka_cli.errors import InputError, InsufficientMemory

SIZES = batch_candidates(512)


def saturating(batch: int) -> float:
    """10 ms of fixed overhead per batch and 1 ms per item: throughput approaches 1000/s."""
    return 0.010 + 0.001 * batch


def test_candidates() -> None:
    assert SIZES == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert batch_candidates(16) == [1, 2, 4, 8, 16]
    assert batch_candidates(12) == [1, 2, 4, 8, 12]
    assert batch_candidates(1) == [1]
    assert batch_candidates(64, minimum=4) == [4, 8, 16, 32, 64]
    assert batch_candidates(64, minimum=5) == [8, 16, 32, 64]
    with pytest.raises(InputError):
        batch_candidates(0)
    with pytest.raises(InputError):
        batch_candidates(4, minimum=8)


def test_a_saturating_curve_picks_the_knee() -> None:
    result = tune_batch_size(saturating, SIZES)
    rates = {p.batch_size: p.items_per_second for p in result.points}
    assert [p.batch_size for p in result.points] == SIZES
    assert rates[1] == pytest.approx(1 / 0.011)
    assert rates[512] == pytest.approx(512 / 0.522)
    assert result.stopped == "swept every candidate"
    # 512 is the fastest (981/s); 256 (962/s) is within 3% of it, 128 (927/s) is not.
    assert result.batch_size == 256
    assert result.items_per_second == pytest.approx(256 / 0.266)


def test_a_wider_tolerance_picks_a_smaller_batch() -> None:
    assert tune_batch_size(saturating, SIZES, tolerance=0.1).batch_size == 128


def test_a_curve_that_turns_down_stops_after_the_peak() -> None:
    def thrashing(batch: int) -> float:
        # Past 32 the working set spills out of cache: each item costs twice as much.
        return 0.010 + 0.001 * batch * (1 if batch <= 32 else 2)

    result = tune_batch_size(thrashing, SIZES)
    assert [p.batch_size for p in result.points] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert result.stopped == "throughput flat for 2 sizes"
    assert result.batch_size == 32


def test_a_batch_that_does_not_fit_ends_the_sweep() -> None:
    calls = []

    def limited(batch: int) -> float:
        calls.append(batch)
        if batch >= 64:
            raise InsufficientMemory(f"a PoC batch of {batch} ran out of memory on cuda:0")
        return saturating(batch)

    result = tune_batch_size(limited, SIZES)
    assert calls == [1, 2, 4, 8, 16, 32, 64]
    last = result.points[-1]
    assert (last.batch_size, last.items_per_second) == (64, None)
    assert last.error == "a PoC batch of 64 ran out of memory on cuda:0"
    assert result.stopped == "batch 64 does not fit"
    assert result.batch_size == 32
    assert result.to_dict()["points"][-1]["error"] == last.error


def test_nothing_fits() -> None:
    def none_fit(batch: int) -> float:
        raise InsufficientMemory("no room")

    with pytest.raises(InsufficientMemory, match="no room"):
        tune_batch_size(none_fit, SIZES)


def test_the_time_budget_ends_the_sweep() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def slow(batch: int) -> float:
        seconds = 0.5 * batch**0.8  # throughput grows as batch^0.2: never flat
        now[0] += seconds * 3  # a warm-up and two timed repetitions
        return seconds

    result = tune_batch_size(slow, SIZES, budget_s=20.0, clock=clock)
    # The clock reads 1.5, 4.1, 8.7, 16.6 and then 30.4 s after batch 16: the budget is spent.
    assert [p.batch_size for p in result.points] == [1, 2, 4, 8, 16]
    assert result.stopped == "time budget of 20 s spent"
    assert result.batch_size == 16
    assert now[0] == pytest.approx(1.5 * sum(b**0.8 for b in (1, 2, 4, 8, 16)))


@pytest.mark.parametrize("sizes", [[], [4, 2], [0, 1], [2, 2]])
def test_bad_candidates(sizes: list[int]) -> None:
    with pytest.raises(InputError):
        tune_batch_size(saturating, sizes)
