"""Settings of one virtual cabinet: its size, link, products and physical parameters.

The defaults describe a plausible two-door, four-shelf cabinet. Scenario files and
the command line override them; ``validate`` raises ``ValueError`` naming the bad value.
"""

import math
from dataclasses import dataclass, field

from firmware_protocol.frame import MAX_ADDRESS, MIN_ADDRESS
from firmware_protocol.link import SUPPORTED_BAUDRATES

MAX_DOORS = 16
MAX_SHELVES = 32
# Serial number used when a scenario gives none. The seed is added to it, so boards
# started with different seeds have different serial numbers.
DEFAULT_SERIAL_BASE = 0x5A470000
# Maximum load of a shelf, without the platform.
DEFAULT_CAPACITY_G = 20_000.0


@dataclass(frozen=True, slots=True)
class Product:
    """A product as the catalogue describes it; ``unit_weight_g`` is the label weight."""

    product_id: str
    name: str
    unit_weight_g: float
    # Relative standard deviation of the real unit weight; None uses the cabinet's value.
    spread: float | None = None

    def validate(self) -> None:
        if not self.product_id:
            raise ValueError("a product id must not be empty")
        if not self.unit_weight_g > 0:
            raise ValueError(
                f"product {self.product_id!r}: unit weight {self.unit_weight_g} g must be > 0"
            )
        if self.spread is not None and not 0 <= self.spread < 0.3:
            raise ValueError(
                f"product {self.product_id!r}: spread {self.spread} must be in 0 <= spread < 0.3"
            )


@dataclass(frozen=True, slots=True)
class Stock:
    product: Product
    count: int


@dataclass(frozen=True, slots=True)
class ShelfSpec:
    """One shelf: the door in front of it and the goods on it when the board starts."""

    door: int
    stock: tuple[Stock, ...] = ()
    capacity_g: float = DEFAULT_CAPACITY_G


@dataclass(frozen=True, slots=True)
class ScaleSettings:
    """Physical parameters of every shelf's load cell and of the board's scale firmware."""

    # Standard deviation of the ADC noise of one raw sample.
    noise_sigma_g: float = 1.0
    # Drift of the raw reading in grams per 15 minutes, the same at any load.
    # A negative rate drifts down.
    creep_g_per_15min: float = 3.0
    # How long the platform swings after a hand leaves the shelf.
    settle_s: float = 1.5
    # How long a hand rests on the shelf while it takes or puts an item.
    hand_contact_s: float = 0.3
    # Dead load of the empty shelf platform, zeroed by the factory tare.
    platform_g: float = 1500.0
    # Relative sensitivity error of the load cell until it is calibrated: 0.01 reads 1 % high.
    gain_error: float = 0.0
    # Firmware: ADC sample rate, and the window and band of the stability detector.
    sample_rate_hz: float = 20.0
    stable_window_s: float = 0.5
    stable_band_g: float = 10.0
    # Peak swing of the platform when a hand touches it, and the swing frequency.
    swing_amplitude_g: float = 200.0
    swing_frequency_hz: float = 3.0

    def validate(self) -> None:
        # The firmware takes a raw value that never changes for a stuck ADC, so the
        # simulated noise must never be zero.
        if not self.noise_sigma_g > 0:
            raise ValueError(f"noise sigma {self.noise_sigma_g} g must be > 0")
        if self.settle_s <= 0:
            raise ValueError(f"settle time {self.settle_s} s must be > 0")
        if self.hand_contact_s < 0:
            raise ValueError(f"hand contact time {self.hand_contact_s} s must be >= 0")
        if self.platform_g < 0:
            raise ValueError(f"platform weight {self.platform_g} g must be >= 0")
        if not -0.5 < self.gain_error < 0.5:
            raise ValueError(f"gain error {self.gain_error} must be in -0.5 < gain error < 0.5")

        if not 1 <= self.sample_rate_hz <= 1000:
            raise ValueError(f"sample rate {self.sample_rate_hz} Hz must be in 1..1000")
        if self.stable_window_s * self.sample_rate_hz < 2:
            raise ValueError(
                f"stability window {self.stable_window_s} s contains fewer than 2 samples "
                f"at {self.sample_rate_hz} Hz; lengthen the window"
            )
        # Ten samples of Gaussian noise span more than 6 sigma in about one window of 1000
        # (estimated by simulation), so a narrower band would make a still shelf flicker
        # between stable and moving.
        if self.stable_band_g < 6 * self.noise_sigma_g:
            raise ValueError(
                f"stability band {self.stable_band_g} g is narrower than 6 x noise sigma "
                f"({6 * self.noise_sigma_g} g), so a still shelf would rarely read stable; "
                "widen the band or lower the noise"
            )
        if self.swing_amplitude_g <= 2 * self.stable_band_g:
            raise ValueError(
                f"swing amplitude {self.swing_amplitude_g} g must be more than twice the "
                f"stability band ({self.stable_band_g} g)"
            )
        if self.swing_frequency_hz * 2 >= self.sample_rate_hz:
            raise ValueError(
                f"swing frequency {self.swing_frequency_hz} Hz must be below half the "
                f"sample rate ({self.sample_rate_hz} Hz)"
            )

    @property
    def creep_mg_per_s(self) -> float:
        return self.creep_g_per_15min * 1000 / 900


@dataclass(frozen=True, slots=True)
class CabinetConfig:
    doors: int = 2
    shelves: int = 4
    baud: int = 115200
    seed: int = 1
    address: int = 1
    serial_number: int | None = None
    firmware_version: tuple[int, int, int] = (1, 0, 0)
    # Default relative standard deviation of a product's real unit weight.
    unit_weight_spread: float = 0.03
    supply_mv: int = 12_000
    temperature_c: float = 24.0
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    # One entry per shelf; empty means ``default_shelves``.
    shelf_specs: tuple[ShelfSpec, ...] = ()

    def validate(self) -> None:
        if not 1 <= self.doors <= MAX_DOORS:
            raise ValueError(f"door count {self.doors} must be in 1..{MAX_DOORS}")
        if not 1 <= self.shelves <= MAX_SHELVES:
            raise ValueError(f"shelf count {self.shelves} must be in 1..{MAX_SHELVES}")
        if self.baud not in SUPPORTED_BAUDRATES:
            raise ValueError(f"baud rate {self.baud} is not one of {SUPPORTED_BAUDRATES}")
        if not MIN_ADDRESS <= self.address <= MAX_ADDRESS:
            raise ValueError(
                f"board address {self.address} must be in {MIN_ADDRESS}..{MAX_ADDRESS}"
            )
        if self.serial_number is not None and not 0 <= self.serial_number <= 0xFFFFFFFF:
            raise ValueError(f"serial number {self.serial_number} does not fit 32 bits")
        if not all(0 <= part <= 0xFF for part in self.firmware_version):
            raise ValueError(f"firmware version {self.firmware_version} parts must be in 0..255")
        if not 0 <= self.unit_weight_spread < 0.3:
            raise ValueError(f"unit weight spread {self.unit_weight_spread} must be in 0..0.3")
        if not 0 <= self.supply_mv <= 0xFFFF:
            raise ValueError(f"supply voltage {self.supply_mv} mV must be in 0..65535")
        # Diagnostics reports tenths of a degree in a signed 16-bit field.
        if not math.isfinite(self.temperature_c) or abs(self.temperature_c) > 3000:
            raise ValueError(f"temperature {self.temperature_c} C must be in -3000..3000 C")
        self.scale.validate()

        if self.shelf_specs and len(self.shelf_specs) != self.shelves:
            raise ValueError(
                f"{len(self.shelf_specs)} shelf entries given for a cabinet of "
                f"{self.shelves} shelves"
            )
        for index, shelf in enumerate(self.resolved_shelves()):
            if not 0 <= shelf.door < self.doors:
                raise ValueError(f"shelf {index}: door {shelf.door} does not exist")
            if shelf.capacity_g <= 0:
                raise ValueError(f"shelf {index}: capacity {shelf.capacity_g} g must be > 0")
            for stock in shelf.stock:
                stock.product.validate()
                if stock.count < 0:
                    raise ValueError(
                        f"shelf {index}: stock of {stock.product.product_id!r} is {stock.count}"
                    )

    @property
    def board_serial_number(self) -> int:
        if self.serial_number is not None:
            return self.serial_number
        return (DEFAULT_SERIAL_BASE + self.seed) & 0xFFFFFFFF

    def resolved_shelves(self) -> tuple[ShelfSpec, ...]:
        return self.shelf_specs or default_shelves(self.doors, self.shelves)

    def door_of_shelf(self, shelf: int) -> int:
        return self.resolved_shelves()[shelf].door


# Sample catalogue of campus goods from Anhui: label weights of the retail packs.
DEFAULT_PRODUCTS = (
    Product("jinzhai-green-tea-250g", "金寨绿茶 250 g", 250.0),
    Product("dangshan-pear-crisps-80g", "砀山梨片 80 g", 80.0),
    Product("yuexi-bamboo-shoots-200g", "岳西笋干 200 g", 200.0),
    Product("luan-guapian-tea-100g", "六安瓜片 100 g", 100.0),
    Product("huangshan-sesame-cake-150g", "黄山烧饼 150 g", 150.0),
)
DEFAULT_STOCK_COUNT = 10


def default_door_of_shelf(shelf: int, doors: int, shelves: int) -> int:
    """Spread shelves evenly over the doors, the first shelves behind door 0."""
    return shelf * doors // shelves


def default_shelves(doors: int, shelves: int) -> tuple[ShelfSpec, ...]:
    """Give each shelf one product of ``DEFAULT_PRODUCTS`` in turn, ten of each."""
    return tuple(
        ShelfSpec(
            door=default_door_of_shelf(index, doors, shelves),
            stock=(Stock(DEFAULT_PRODUCTS[index % len(DEFAULT_PRODUCTS)], DEFAULT_STOCK_COUNT),),
        )
        for index in range(shelves)
    )
