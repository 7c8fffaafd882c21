"""Load cell under one shelf, and the board firmware's channel that reads it.

``LoadCell`` is the physics: the true load, creep, the swing of the platform after
a hand touches it, ADC noise, and the disconnected and stuck faults.
``ScaleChannel`` is what the firmware does with the samples: stability detection
over a window, tare, calibration gain and fault detection. Masses are in
milligrams and times in seconds of the simulation clock.
"""

import math
import random
from collections import deque
from dataclasses import dataclass

from firmware_protocol.messages import ErrorCode, ScaleFaultCode, ShelfStatus
from simulator.config import ScaleSettings

# A unit weight is drawn from a normal distribution cut at this many standard deviations,
# because a pack far off its label weight would be rejected at the factory.
UNIT_WEIGHT_LIMIT_SIGMAS = 3.0
# The firmware declares a channel stuck after this long without any change of the raw value.
# Real ADC noise changes the low bits of every conversion, so identical values mean a fault.
STUCK_DETECT_S = 2.0
# The ADC saturates at this multiple of the shelf capacity.
ADC_FULL_SCALE_FACTOR = 1.5
# Calibration is rejected when the gain would leave this range.
MIN_GAIN = 0.5
MAX_GAIN = 2.0
# Calibration needs at least this net load, or the gain would mostly fit noise.
MIN_CALIBRATION_LOAD_MG = 10_000
# Number of recent changes of a channel's stability verdict that it keeps, so that a
# benchmark can tell when a shelf settled without sampling it.
STABILITY_HISTORY = 8
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Item:
    """One physical pack; ``weight_mg`` is its real weight, not the label weight."""

    product_id: str
    weight_mg: int


def draw_unit_weight_mg(rng: random.Random, label_g: float, spread: float) -> int:
    """Draw one pack's real weight: normal around the label weight, cut at 3 sigma.

    ``spread`` is the relative standard deviation before the cut, which lowers the
    standard deviation of the drawn weights by 1.3 %.
    """
    label_mg = label_g * 1000
    sigma = label_mg * spread
    if sigma == 0:
        return max(1, round(label_mg))
    while True:
        weight = rng.gauss(label_mg, sigma)
        if abs(weight - label_mg) <= UNIT_WEIGHT_LIMIT_SIGMAS * sigma:
            return max(1, round(weight))


@dataclass(frozen=True, slots=True)
class Touch:
    """A hand on the shelf from ``start`` to ``contact_end``, then a swing until ``settle_end``."""

    start: float
    contact_end: float
    settle_end: float
    phase: float


class LoadCell:
    """Raw signal of one shelf's load cell, sampled with ``sample(t)``.

    Samples must be requested in increasing time order, and the load must be
    changed only after every sample before the change was taken, because past
    samples are computed from the present load.
    """

    def __init__(
        self,
        settings: ScaleSettings,
        rng: random.Random,
        start_time: float,
        capacity_mg: int,
    ) -> None:
        self._settings = settings
        self._rng = rng
        self._start = start_time
        self.capacity_mg = capacity_mg
        self.items: list[Item] = []
        # Mass of things on the shelf that are not goods, such as a bag put down.
        self.foreign_mg = 0
        self.connected = True
        self.stuck = False
        # Incremented on every change that the firmware can notice.
        self.revision = 0
        self._stuck_value: float | None = None
        self._last_value: float | None = None
        self._touches: list[Touch] = []
        # The swing decays from the full amplitude to twice the stability band over the
        # settle time, so until then the swing alone spans more than the band.
        end_amplitude = 2 * settings.stable_band_g
        self._decay_s = settings.settle_s / math.log(settings.swing_amplitude_g / end_amplitude)

    @property
    def load_mg(self) -> int:
        """True mass on the platform, without the platform itself."""
        return sum(item.weight_mg for item in self.items) + self.foreign_mg

    @property
    def full_scale_mg(self) -> float:
        return self._settings.platform_g * 1000 + ADC_FULL_SCALE_FACTOR * self.capacity_mg

    def touch(self, now: float) -> Touch:
        """Start a hand contact at ``now``; returns it with its contact and settle end."""
        settings = self._settings
        contact_end = now + settings.hand_contact_s
        touch = Touch(
            start=now,
            contact_end=contact_end,
            settle_end=contact_end + settings.settle_s,
            phase=self._rng.uniform(0, 2 * math.pi),
        )
        self._touches.append(touch)
        self.revision += 1
        return touch

    def settled_at(self) -> float:
        """Return when the last swing ends, or -inf if the platform is still."""
        return max((touch.settle_end for touch in self._touches), default=-math.inf)

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.revision += 1

    def set_stuck(self, stuck: bool, now: float) -> None:
        """Freeze the output at the last conversion, as a hung ADC does, or release it."""
        self.stuck = stuck
        if stuck:
            self._stuck_value = self._last_value
            if self._stuck_value is None:
                self._stuck_value = self._fresh_sample(now)
        else:
            self._stuck_value = None
        self.revision += 1

    def sample(self, t: float) -> float | None:
        """Return the raw reading at ``t`` in mg, or None while the cell is disconnected."""
        if not self.connected:
            return None
        if self._stuck_value is not None:
            return self._stuck_value
        value = self._fresh_sample(t)
        self._last_value = value
        return value

    def _fresh_sample(self, t: float) -> float:
        settings = self._settings
        gross_mg = settings.platform_g * 1000 + self.load_mg
        # NOTE: real creep grows with the load and levels off after a load change. This
        # drift is linear in time and never stops, so only a tare removes what has built up.
        value = (
            gross_mg * (1 + settings.gain_error)
            + settings.creep_mg_per_s * (t - self._start)
            + self._swing_mg(t)
            + self._rng.gauss(0.0, settings.noise_sigma_g * 1000)
        )
        return min(max(value, 0.0), self.full_scale_mg)

    def _swing_mg(self, t: float) -> float:
        self._touches = [touch for touch in self._touches if touch.settle_end > t]
        settings = self._settings
        amplitude = settings.swing_amplitude_g * 1000
        omega = 2 * math.pi * settings.swing_frequency_hz
        total = 0.0
        for touch in self._touches:
            if t < touch.start:
                continue
            if t < touch.contact_end:
                # The hand presses down with a varying force while it takes or places goods.
                total += amplitude * (0.5 + 0.5 * math.sin(omega * (t - touch.start) + touch.phase))
            else:
                since_release = t - touch.contact_end
                envelope = amplitude * math.exp(-since_release / self._decay_s)
                total += envelope * math.sin(omega * since_release + touch.phase)
        return total


class ScaleRejectedError(Exception):
    """A tare or calibration that the firmware rejects; ``code`` is the protocol's reason."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ChannelReading:
    status: ShelfStatus
    weight_mg: int


class ScaleChannel:
    """The firmware's scale channel for one load cell.

    It samples the cell on a fixed grid (``sample_rate_hz``), keeps the last
    ``stable_window_s`` of samples, and reports their mean. The reading is STABLE
    when the window is full and its samples span no more than ``stable_band_g``.
    Net weight = (mean - tare offset) x gain.
    """

    def __init__(self, cell: LoadCell, settings: ScaleSettings, start_time: float) -> None:
        self.cell = cell
        self._start = start_time
        self._period_s = 1 / settings.sample_rate_hz
        self._window: deque[float] = deque(
            maxlen=max(2, round(settings.stable_window_s * settings.sample_rate_hz))
        )
        self._band_mg = settings.stable_band_g * 1000
        self._stuck_samples = math.ceil(STUCK_DETECT_S / self._period_s)
        self._next_index = 0
        self._last_sample_time = -math.inf
        self._previous_value: float | None = None
        self._identical_run = 0
        self._seen_revision = -1
        # The factory tared the empty platform and left the gain at 1.
        self.zero_mg = settings.platform_g * 1000 * (1 + settings.gain_error)
        self.tare_offset_mg = self.zero_mg
        self.gain = 1.0
        self.disconnected = False
        self.stuck = False
        self.overloaded = False
        # (sample time, stable) at each change of the window's verdict, newest last.
        self.stability_changes: deque[tuple[float, bool]] = deque(maxlen=STABILITY_HISTORY)

    @property
    def faulted(self) -> bool:
        return self.disconnected or self.stuck

    @property
    def window_size(self) -> int:
        return self._window.maxlen or 0

    def advance(self, now: float) -> list[ScaleFaultCode]:
        """Take every sample due by ``now``; returns the faults detected on the way."""
        last_index = math.floor((now - self._start) / self._period_s + 1e-9)
        if last_index < self._next_index:
            return []
        # Samples older than these cannot change the window or the stuck detector.
        keep = self.window_size + self._stuck_samples + 1
        if last_index - self._next_index + 1 > keep:
            self._next_index = last_index - keep + 1
        faults: list[ScaleFaultCode] = []
        for index in range(self._next_index, last_index + 1):
            t = self._start + index * self._period_s
            faults += self._take_sample(t)
        self._next_index = last_index + 1
        self._seen_revision = self.cell.revision
        return faults

    def next_deadline(self) -> float | None:
        """Return when a fault could next be detected, or None while nothing is pending."""
        next_sample = self._start + self._next_index * self._period_s
        if self.cell.revision != self._seen_revision:
            return next_sample
        if self.cell.stuck and not self.stuck:
            remaining = max(0, self._stuck_samples - self._identical_run - 1)
            return next_sample + remaining * self._period_s
        return None

    def _take_sample(self, t: float) -> list[ScaleFaultCode]:
        self._last_sample_time = t
        value = self.cell.sample(t)
        faults: list[ScaleFaultCode] = []
        if value is None:
            if not self.disconnected:
                self.disconnected = True
                self._window.clear()
                self._note_stability(t)
                faults.append(ScaleFaultCode.DISCONNECTED)
            self._previous_value = None
            self._identical_run = 0
            return faults
        self.disconnected = False

        if value == self._previous_value:
            self._identical_run += 1
        else:
            self._identical_run = 0
            self.stuck = False
        self._previous_value = value
        if not self.stuck and self._identical_run >= self._stuck_samples:
            self.stuck = True
            faults.append(ScaleFaultCode.STUCK)

        overloaded = value - self.zero_mg > self.cell.capacity_mg
        if overloaded and not self.overloaded:
            faults.append(ScaleFaultCode.OVERLOAD)
        self.overloaded = overloaded

        self._window.append(value)
        self._note_stability(t)
        return faults

    def _note_stability(self, t: float) -> None:
        stable = self._is_stable()
        was_stable = self.stability_changes[-1][1] if self.stability_changes else False
        if stable != was_stable:
            self.stability_changes.append((t, stable))

    def _is_stable(self) -> bool:
        window = self._window
        return len(window) == window.maxlen and max(window) - min(window) <= self._band_mg

    def _mean_mg(self) -> float | None:
        if not self._window:
            return None
        return sum(self._window) / len(self._window)

    def reading(self) -> ChannelReading:
        """Return the status bits and net weight as of the last sample taken."""
        if self.disconnected:
            return ChannelReading(ShelfStatus.FAULT, 0)
        mean = self._mean_mg()
        if mean is None:
            return ChannelReading(ShelfStatus(0), 0)
        status = ShelfStatus(0)
        if self.stuck:
            status |= ShelfStatus.FAULT
        elif self._is_stable():
            status |= ShelfStatus.STABLE
        if self.overloaded:
            status |= ShelfStatus.OVERLOAD
        weight = round((mean - self.tare_offset_mg) * self.gain)
        return ChannelReading(status, min(max(weight, INT32_MIN), INT32_MAX))

    def tare(self) -> None:
        """Make the present stable reading the zero; raises ``ScaleRejectedError``."""
        mean = self._stable_mean("tare")
        self.tare_offset_mg = mean

    def calibrate(self, mass_mg: int) -> int:
        """Set the gain so that the present stable load reads ``mass_mg``; returns gain in ppm."""
        if mass_mg < MIN_CALIBRATION_LOAD_MG:
            raise ScaleRejectedError(
                ErrorCode.BAD_ARGUMENT,
                f"calibration mass {mass_mg} mg is below {MIN_CALIBRATION_LOAD_MG} mg",
            )
        mean = self._stable_mean("calibrate")
        load = mean - self.tare_offset_mg
        if load < MIN_CALIBRATION_LOAD_MG:
            raise ScaleRejectedError(
                ErrorCode.BAD_ARGUMENT,
                f"net load {load:.0f} mg is below {MIN_CALIBRATION_LOAD_MG} mg; "
                "put the reference mass on the shelf",
            )
        gain = mass_mg / load
        if not MIN_GAIN <= gain <= MAX_GAIN:
            raise ScaleRejectedError(
                ErrorCode.BAD_ARGUMENT,
                f"gain {gain:.3f} for {mass_mg} mg on a net load of {load:.0f} mg "
                f"is outside {MIN_GAIN}..{MAX_GAIN}",
            )
        self.gain = gain
        return round(gain * 1_000_000)

    def _stable_mean(self, operation: str) -> float:
        if self.faulted:
            raise ScaleRejectedError(
                ErrorCode.HARDWARE_FAULT, f"{operation}: the channel is faulted"
            )
        mean = self._mean_mg()
        if mean is None or not self._is_stable():
            raise ScaleRejectedError(
                ErrorCode.NOT_STABLE, f"{operation}: the reading is not stable"
            )
        return mean
