"""Physical models of the simulator, driven by a manual clock: statistics and state machines.

The statistical tests use fixed seeds, so they are deterministic. Each tolerance
is still set from the sampling error, so another seed would pass as well.
"""

import random
import statistics

import pytest

from firmware_protocol.messages import (
    DoorPosition,
    ErrorCode,
    LockFaultCode,
    LockState,
    ScaleFaultCode,
)
from simulator.config import ScaleSettings
from simulator.doors import (
    DoorClosedChange,
    DoorForcedChange,
    DoorOpenedChange,
    DoorUnit,
    LockBusyError,
    LockFaultChange,
)
from simulator.errors import ActionRejectedError
from simulator.scale import (
    Item,
    LoadCell,
    ScaleChannel,
    ScaleRejectedError,
    draw_unit_weight_mg,
)

CAPACITY_MG = 20_000_000


def make_scale(
    settings: ScaleSettings, seed: int = 1, start: float = 0.0
) -> tuple[LoadCell, ScaleChannel]:
    cell = LoadCell(settings, random.Random(seed), start, CAPACITY_MG)
    return cell, ScaleChannel(cell, settings, start)


# Load cell statistics.


def test_noise_sigma_matches_setting() -> None:
    settings = ScaleSettings(noise_sigma_g=2.0, creep_g_per_15min=0.0)
    cell, _ = make_scale(settings)
    samples = [cell.sample(i * 0.05) for i in range(5000)]
    values = [value for value in samples if value is not None]

    # The standard error of a sample standard deviation is sigma / sqrt(2 n), 1 % here,
    # so 4 % is four standard errors.
    measured_g = statistics.stdev(values) / 1000
    assert measured_g == pytest.approx(2.0, rel=0.04)


def test_unit_weight_spread_matches_setting() -> None:
    rng = random.Random(7)
    label_g = 250.0
    spread = 0.05
    weights = [draw_unit_weight_mg(rng, label_g, spread) for _ in range(4000)]

    mean_mg = statistics.fmean(weights)
    # Standard error of the mean: 12.5 g / sqrt(4000) = 0.2 g; allow four of them.
    assert mean_mg == pytest.approx(label_g * 1000, abs=800)
    # The 3-sigma cut lowers the standard deviation by 1.3 %; the sampling error of the
    # standard deviation is 1.1 %, so 1.3 % +- 4.5 % covers it.
    relative_sd = statistics.stdev(weights) / (label_g * 1000)
    assert relative_sd == pytest.approx(spread * 0.987, rel=0.045)
    assert max(abs(weight - label_g * 1000) for weight in weights) <= 3 * spread * label_g * 1000


def test_unit_weight_without_spread_is_label() -> None:
    assert draw_unit_weight_mg(random.Random(1), 80.0, 0.0) == 80_000


def test_creep_rate_matches_setting() -> None:
    settings = ScaleSettings(noise_sigma_g=1.0, creep_g_per_15min=4.0)
    cell, _ = make_scale(settings, seed=3)
    cell.items.append(Item("tea", 250_000))

    def mean_reading_g(start: float) -> float:
        values = [cell.sample(start + i * 0.05) for i in range(400)]
        return statistics.fmean(value for value in values if value is not None) / 1000

    start_g = mean_reading_g(0.0)
    later_g = mean_reading_g(900.0)

    # Each mean of 400 samples has a standard error of 0.05 g, their difference 0.07 g;
    # 0.3 g is more than four standard errors.
    assert later_g - start_g == pytest.approx(4.0, abs=0.3)


# Stability detection and settling.


def test_reading_stable_only_after_settle_time() -> None:
    settings = ScaleSettings(settle_s=1.5, hand_contact_s=0.3)
    cell, channel = make_scale(settings, seed=11)
    cell.items.append(Item("tea", 250_000))
    channel.advance(5.0)
    assert channel.reading().status.name == "STABLE"

    touch_time = 5.0
    cell.touch(touch_time)
    cell.items.clear()
    settle_end = touch_time + settings.hand_contact_s + settings.settle_s

    # From the first sample after the touch to the end of the settle time, the reading
    # is moving. The sample at the touch time itself was taken before the hand arrived.
    t = touch_time + 1 / settings.sample_rate_hz
    while t < settle_end:
        channel.advance(t)
        assert not channel.reading().status & 1, f"stable at {t:.2f} s, before {settle_end} s"
        t += 0.01

    # After the window has filled with still samples, the reading is stable and near 0.
    stable_by = settle_end + settings.stable_window_s + 1 / settings.sample_rate_hz
    channel.advance(stable_by)
    reading = channel.reading()
    assert reading.status.name == "STABLE"
    assert abs(reading.weight_mg) < 2_000


def test_stability_changes_record_settling() -> None:
    settings = ScaleSettings(settle_s=1.0, hand_contact_s=0.3)
    cell, channel = make_scale(settings, seed=4)
    period = 1 / settings.sample_rate_hz
    channel.advance(2.0)
    cell.touch(2.0)

    seen: list[tuple[float, bool]] = [(2.0, True)]
    t = 2.0
    while t < 5.0:
        t += period
        channel.advance(t)
        stable = channel.reading().status.name == "STABLE"
        if stable != seen[-1][1]:
            seen.append((t, stable))

    assert len(seen) >= 3
    changes = list(channel.stability_changes)[-(len(seen) - 1) :]
    assert [stable for _, stable in changes] == [stable for _, stable in seen[1:]]
    assert [at for at, _ in changes] == pytest.approx([at for at, _ in seen[1:]])
    assert changes[-1][1] is True


def test_settle_time_setting_shortens_swing() -> None:
    settings = ScaleSettings(settle_s=0.2, hand_contact_s=0.1)
    cell, channel = make_scale(settings, seed=5)
    channel.advance(1.0)
    cell.touch(1.0)

    channel.advance(1.0 + 0.1 + 0.2 + settings.stable_window_s + 0.05)

    assert channel.reading().status.name == "STABLE"


def test_tare_needs_stable_reading() -> None:
    settings = ScaleSettings()
    cell, channel = make_scale(settings)
    channel.advance(2.0)
    cell.touch(2.0)
    channel.advance(2.2)

    with pytest.raises(ScaleRejectedError) as error:
        channel.tare()
    assert error.value.code is ErrorCode.NOT_STABLE


def test_calibrate_corrects_gain_error() -> None:
    settings = ScaleSettings(gain_error=0.02, creep_g_per_15min=0.0)
    cell, channel = make_scale(settings, seed=2)
    cell.items.append(Item("reference", 5_000_000))
    channel.advance(3.0)
    assert channel.reading().weight_mg == pytest.approx(5_100_000, abs=2_000)

    gain_ppm = channel.calibrate(5_000_000)

    assert gain_ppm == pytest.approx(1_000_000 / 1.02, abs=500)
    channel.advance(4.0)
    assert channel.reading().weight_mg == pytest.approx(5_000_000, abs=2_000)


# Scale faults.


def test_disconnected_cell_reports_fault() -> None:
    cell, channel = make_scale(ScaleSettings())
    channel.advance(1.0)
    cell.set_connected(False)

    faults = channel.advance(1.1)

    assert faults == [ScaleFaultCode.DISCONNECTED]
    assert channel.reading().status.name == "FAULT"
    assert channel.reading().weight_mg == 0


def test_stuck_cell_detected_after_two_seconds() -> None:
    cell, channel = make_scale(ScaleSettings())
    channel.advance(1.0)
    cell.set_stuck(True, 1.0)

    assert channel.advance(2.9) == []
    # Until detection, the frozen value looks perfectly stable.
    assert channel.reading().status.name == "STABLE"
    deadline = channel.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(3.05, abs=0.06)

    assert channel.advance(3.1) == [ScaleFaultCode.STUCK]
    assert channel.reading().status.name == "FAULT"


def test_overload_flag_set_above_capacity() -> None:
    cell, channel = make_scale(ScaleSettings())
    channel.advance(1.0)
    cell.foreign_mg = CAPACITY_MG + 1_000_000

    faults = channel.advance(1.1)

    assert faults == [ScaleFaultCode.OVERLOAD]
    assert channel.reading().status & 0x04


# Door and lock.


def test_pulse_releases_then_latches() -> None:
    door = DoorUnit(0)
    door.pulse(10.0, 0.5, token=77)
    assert door.lock_state is LockState.RELEASED
    assert door.last_token == 77

    assert door.update(10.4) == []
    assert door.lock_state is LockState.RELEASED
    assert door.update(10.5) == []
    assert door.lock_state is LockState.LOCKED
    assert door.next_deadline() is None


def test_pulse_while_pulsing_is_busy() -> None:
    door = DoorUnit(0)
    door.pulse(1.0, 1.0, token=1)

    with pytest.raises(LockBusyError):
        door.pulse(1.5, 1.0, token=2)
    assert door.last_token == 1
    assert door.pulse_count == 1


def test_door_opened_during_pulse_stays_released_until_close() -> None:
    door = DoorUnit(1)
    door.pulse(0.0, 0.3, token=5)

    opened = door.open(0.1)
    assert opened == [DoorOpenedChange(0.1, 1, 5)]
    door.update(1.0)
    assert door.lock_state is LockState.RELEASED

    closed = door.close(4.1)
    assert len(closed) == 1
    assert isinstance(closed[0], DoorClosedChange)
    assert closed[0].open_s == pytest.approx(4.0)
    assert door.lock_state is LockState.LOCKED
    assert door.position is DoorPosition.CLOSED


def test_latched_door_rejects_open() -> None:
    door = DoorUnit(0)
    with pytest.raises(ActionRejectedError, match="locked"):
        door.open(1.0)

    door.pulse(2.0, 0.2, token=9)
    door.update(2.5)
    with pytest.raises(ActionRejectedError, match="locked"):
        door.open(2.5)


def test_forced_door_reports_forced() -> None:
    door = DoorUnit(0)

    assert door.force(3.0) == [DoorForcedChange(3.0, 0)]
    assert door.lock_state is LockState.LOCKED
    assert door.is_open


def test_jammed_lock_reports_jam_and_stays_shut() -> None:
    door = DoorUnit(0)
    door.set_jammed(True)
    door.pulse(1.0, 0.5, token=3)

    changes = door.update(1.1)

    assert changes == [LockFaultChange(1.05, 0, LockFaultCode.JAMMED)]
    assert door.lock_state is LockState.FAULT
    # The pulse reached the coil, so its token counts as executed.
    assert door.last_token == 3
    with pytest.raises(ActionRejectedError, match="jammed"):
        door.open(1.2)

    door.set_jammed(False)
    assert door.lock_state is LockState.LOCKED


def test_failing_latch_reports_not_latched() -> None:
    door = DoorUnit(0)
    door.set_latch_fails(True)
    door.pulse(0.0, 0.2, token=4)
    door.open(0.1)

    changes = door.close(2.0)

    assert changes[-1] == LockFaultChange(2.0, 0, LockFaultCode.NOT_LATCHED)
    assert door.lock_state is LockState.FAULT
    # Nothing holds the door now, so it opens without an unlock, as a forced opening.
    assert door.open(3.0) == [DoorForcedChange(3.0, 0)]


def test_unlatched_lock_latches_after_repair() -> None:
    door = DoorUnit(0)
    door.set_latch_fails(True)
    door.pulse(0.0, 0.2, token=4)
    door.update(0.3)
    assert door.lock_fault is LockFaultCode.NOT_LATCHED

    door.set_latch_fails(False)

    assert door.lock_state is LockState.LOCKED
