"""Stable-weight detection and zero tracking."""

from kiosk_agent.weighing import STABLE_SPAN_MG, ShelfWindow, ZeroTracker


def _fill(window: ShelfWindow, start: float, values: list[int], stable: bool = True) -> float:
    now = start
    for value in values:
        window.add(now, value, stable)
        now += 0.1
    return now - 0.1


def test_steady_samples_give_their_mean() -> None:
    window = ShelfWindow()

    now = _fill(window, 0.0, [999_000, 1_000_000, 1_001_000, 999_000, 1_000_500, 999_500])

    assert window.stable_weight(now) == 1_000_000


def test_swinging_samples_are_not_stable() -> None:
    window = ShelfWindow()

    now = _fill(window, 0.0, [1_000_000, 1_000_000 + STABLE_SPAN_MG + 1, 1_000_000] * 2)

    assert window.stable_weight(now) is None


def test_board_flag_must_be_set_on_newest_sample() -> None:
    window = ShelfWindow()
    now = _fill(window, 0.0, [500_000] * 5)

    window.add(now + 0.1, 500_000, False)

    assert window.stable_weight(now + 0.1) is None


def test_window_may_start_before_board_flag() -> None:
    window = ShelfWindow()
    _fill(window, 0.0, [503_000, 497_000, 502_000], stable=False)

    now = _fill(window, 0.3, [500_000, 500_400], stable=True)

    # Only the flagged samples make the weight.
    assert window.stable_weight(now) == 500_200


def test_one_flagged_sample_is_not_stable() -> None:
    window = ShelfWindow()
    _fill(window, 0.0, [500_000] * 3, stable=False)

    now = _fill(window, 0.3, [500_000], stable=True)

    assert window.stable_weight(now) is None


def test_unflagged_samples_count_toward_span() -> None:
    window = ShelfWindow()
    _fill(window, 0.0, [500_000 + STABLE_SPAN_MG + 1], stable=False)

    now = _fill(window, 0.1, [500_000] * 2, stable=True)

    assert window.stable_weight(now) is None


def test_flag_cleared_after_set_is_not_stable() -> None:
    window = ShelfWindow()

    for at, stable in [(0.15, True), (0.2, False), (0.3, True), (0.4, True)]:
        window.add(at, 500_000, stable)

    assert window.stable_weight(0.4) is None


def test_too_short_a_window_is_not_stable() -> None:
    window = ShelfWindow()

    now = _fill(window, 0.0, [500_000] * 2)

    assert window.stable_weight(now) is None


def test_zero_tracking_absorbs_creep_but_not_items() -> None:
    tracker = ZeroTracker()
    weight = 2_000_000

    for _ in range(100):
        tracker.update(weight, idle=True)
        weight += 800  # creep of 0.8 g between idle readings
    tracker.update(weight - 250_000, idle=True)  # a pack of 250 g went

    # The last 0.8 g of creep came with the pack and stays in the reading.
    assert tracker.drift_mg == 99 * 800
    assert tracker.corrected(weight - 250_000) == 2_000_000 - 250_000 + 800


def test_zero_tracking_pauses_during_sessions() -> None:
    tracker = ZeroTracker()
    tracker.update(1_000_000, idle=True)

    tracker.update(1_001_000, idle=False)

    assert tracker.drift_mg == 0
