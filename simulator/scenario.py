"""Scenario files: a cabinet's settings, stock, faults and timed actions, in TOML.

A scenario has these tables, each optional (``scenarios/anhui_campus.toml``
shows every key)::

    [cabinet]    doors, shelves, baud, seed, address, serial_number,
                 firmware_version ("1.0.0"), unit_weight_spread, supply_mv, temperature_c
    [scale]      the fields of ``ScaleSettings``: noise_sigma_g, creep_g_per_15min,
                 settle_s, hand_contact_s, ...
    [[shelves]]  door, capacity_g, and [[shelves.products]] with id, name,
                 unit_weight_g, stock and an optional spread
    [faults]     NAME = VALUE as for --fault; a hardware fault takes an index or a list
    [[actions]]  at_s (seconds after the board starts), action (a control command
                 such as take, force_door or fault) and the command's fields

Unknown keys are errors, so a misspelt setting does not silently keep its default.
"""

import dataclasses
import logging
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.cabinet import Cabinet
from simulator.config import (
    DEFAULT_CAPACITY_G,
    CabinetConfig,
    Product,
    ScaleSettings,
    ShelfSpec,
    Stock,
)
from simulator.control import COMMAND_NAMES, CommandHandler
from simulator.faults import FaultSpec, parse_fault

logger = logging.getLogger(__name__)

CABINET_KEYS = {
    "doors",
    "shelves",
    "baud",
    "seed",
    "address",
    "serial_number",
    "firmware_version",
    "unit_weight_spread",
    "supply_mv",
    "temperature_c",
}
SHELF_KEYS = {"door", "capacity_g", "products"}
PRODUCT_KEYS = {"id", "name", "unit_weight_g", "stock", "spread"}
ACTION_KEYS = {"at_s", "action"}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ScenarioAction:
    """A control command run ``at_s`` seconds after the board starts."""

    at_s: float
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    config: CabinetConfig
    faults: tuple[FaultSpec, ...] = ()
    actions: tuple[ScenarioAction, ...] = ()


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raises ``ScenarioError`` naming the problem."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ScenarioError(f"cannot read scenario {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"scenario {path} is not valid TOML: {error}") from None
    try:
        return parse_scenario(data)
    except (ValueError, TypeError) as error:
        raise ScenarioError(f"scenario {path}: {error}") from None


def parse_scenario(data: dict[str, Any]) -> Scenario:
    """Build a scenario from parsed TOML; raises ``ValueError`` naming the bad key."""
    _check_keys("top level", data, {"cabinet", "scale", "shelves", "faults", "actions"})
    cabinet = dict(data.get("cabinet", {}))
    _check_keys("[cabinet]", cabinet, CABINET_KEYS)
    if "firmware_version" in cabinet:
        cabinet["firmware_version"] = _parse_version(cabinet["firmware_version"])

    scale_table = data.get("scale", {})
    scale_keys = {field.name for field in dataclasses.fields(ScaleSettings)}
    _check_keys("[scale]", scale_table, scale_keys)
    scale = ScaleSettings(**scale_table)

    shelves = tuple(
        _parse_shelf(index, table) for index, table in enumerate(data.get("shelves", []))
    )
    if shelves and "shelves" not in cabinet:
        cabinet["shelves"] = len(shelves)
    config = CabinetConfig(**cabinet, scale=scale, shelf_specs=shelves)
    config.validate()

    faults = _parse_faults(data.get("faults", {}))
    actions = tuple(
        _parse_action(index, table) for index, table in enumerate(data.get("actions", []))
    )
    return Scenario(config, faults, tuple(sorted(actions, key=lambda action: action.at_s)))


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed keys: {sorted(allowed)}")


def _parse_version(value: Any) -> tuple[int, int, int]:
    parts = str(value).split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"firmware_version {value!r} is not of the form MAJOR.MINOR.PATCH")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _parse_shelf(index: int, table: dict[str, Any]) -> ShelfSpec:
    where = f"[[shelves]] entry {index}"
    _check_keys(where, table, SHELF_KEYS)
    if "door" not in table:
        raise ValueError(f"{where}: missing key 'door'")
    stock = []
    for product_index, product in enumerate(table.get("products", [])):
        product_where = f"{where}, product {product_index}"
        _check_keys(product_where, product, PRODUCT_KEYS)
        for key in ("id", "unit_weight_g", "stock"):
            if key not in product:
                raise ValueError(f"{product_where}: missing key {key!r}")
        stock.append(
            Stock(
                Product(
                    product_id=product["id"],
                    name=product.get("name", product["id"]),
                    unit_weight_g=float(product["unit_weight_g"]),
                    spread=product.get("spread"),
                ),
                int(product["stock"]),
            )
        )
    return ShelfSpec(
        door=int(table["door"]),
        stock=tuple(stock),
        capacity_g=float(table.get("capacity_g", DEFAULT_CAPACITY_G)),
    )


def _parse_faults(table: dict[str, Any]) -> tuple[FaultSpec, ...]:
    faults: list[FaultSpec] = []
    for name, value in table.items():
        values = value if isinstance(value, list) else [value]
        for single in values:
            faults.append(parse_fault(f"{name}={single}"))
    return tuple(faults)


def _parse_action(index: int, table: dict[str, Any]) -> ScenarioAction:
    where = f"[[actions]] entry {index}"
    for key in ACTION_KEYS:
        if key not in table:
            raise ValueError(f"{where}: missing key {key!r}")
    at_s = float(table["at_s"])
    if at_s < 0:
        raise ValueError(f"{where}: at_s {at_s} must be >= 0")
    command = table["action"]
    if command not in COMMAND_NAMES:
        raise ValueError(
            f"{where}: unknown action {command!r}; actions: {', '.join(COMMAND_NAMES)}"
        )
    if command in ("fault", "clear_fault"):
        parse_fault(str(table.get("fault", "")))
    request = {key: value for key, value in table.items() if key not in ACTION_KEYS}
    request["command"] = command
    request.setdefault("actor", "scenario")
    return ScenarioAction(at_s, request)


class ScenarioRunner:
    """Runs a scenario's actions on a cabinet at their times after ``start_time``.

    ``run_due`` runs the actions that are due by the cabinet clock, which suits tests
    with a ``ManualClock``. ``start`` runs them all in a thread on a real clock.
    """

    def __init__(
        self, cabinet: Cabinet, actions: tuple[ScenarioAction, ...], start_time: float
    ) -> None:
        self.cabinet = cabinet
        self.start_time = start_time
        self._pending = list(actions)
        self._commands = CommandHandler(cabinet)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scenario", daemon=True)
        self.finished = threading.Event()
        self.responses: list[dict[str, Any]] = []

    def run_due(self) -> list[dict[str, Any]]:
        """Run every action due by now; returns their responses."""
        elapsed = self.cabinet.clock.now() - self.start_time
        responses = []
        while self._pending and self._pending[0].at_s <= elapsed:
            action = self._pending.pop(0)
            response = self._commands.handle(dict(action.request))
            if response["ok"]:
                logger.info("scenario action at %.3f s: %s", action.at_s, action.request)
            else:
                logger.error(
                    "scenario action at %.3f s failed: %s: %s",
                    action.at_s,
                    action.request,
                    response["error"],
                )
            responses.append(response)
        self.responses += responses
        if not self._pending:
            self.finished.set()
        return responses

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            if not self._pending:
                return
            wait_s = self.start_time + self._pending[0].at_s - self.cabinet.clock.now()
            self._stop.wait(max(0.0, wait_s))
