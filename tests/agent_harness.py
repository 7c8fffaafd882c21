"""A kiosk agent process with a virtual board, and a stand-in for the fleet server.

``StandInServer`` plays the server's part over a real broker: it signs unlock
and planogram commands with the cabinet's key, collects the sales and events
the agent publishes, and acknowledges them. ``AgentProcess`` runs
``kiosk-agent`` as a child process, so that tests can kill it for real.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from kiosk_agent.contract import (
    Ack,
    Channel,
    KioskEvent,
    PlanogramCommand,
    PlanogramProduct,
    PlanogramShelf,
    SaleRecord,
    Telemetry,
    UnlockCommand,
    UnlockMode,
    encode_payload,
    kiosk_topic,
    parse_payload,
    utc_now,
)
from kiosk_agent.signing import new_nonce, sign_command

KEY_HEX = "9f2c4e71b06d8a35c2f19e47d05b3a8c61e2f7049d3b5a86c1e0f92d47b8a613"
KEY = bytes.fromhex(KEY_HEX)

# The virtual board's default shelves: product id, label grams, sample price in fen.
SIM_SHELVES = [
    ("jinzhai-green-tea-250g", "金寨绿茶 250 g", 250, 3_800),
    ("dangshan-pear-crisps-80g", "砀山梨片 80 g", 80, 1_250),
    ("yuexi-bamboo-shoots-200g", "岳西笋干 200 g", 200, 2_600),
    ("luan-guapian-tea-100g", "六安瓜片 100 g", 100, 5_800),
]
# The board's packs spread with a 3 % standard deviation, cut at three.
TOLERANCE = 0.09


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def planogram_command(
    kiosk_id: str,
    version: int = 1,
    shelves: list[tuple[str, str, int, int]] | None = None,
) -> PlanogramCommand:
    """Return a signed planogram with one product per shelf: (id, name, grams, price fen)."""
    now = utc_now()
    command = PlanogramCommand(
        command_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        issued_at=now,
        expires_at=now + timedelta(minutes=30),
        nonce=new_nonce(),
        version=version,
        shelves=[
            PlanogramShelf(
                shelf=shelf,
                capacity_items=20,
                products=[
                    PlanogramProduct(
                        product_id=product_id,
                        name=name,
                        unit_weight_mg=grams * 1000,
                        tolerance_mg=round(grams * 1000 * TOLERANCE),
                        price_fen=price,
                    )
                ],
            )
            for shelf, (product_id, name, grams, price) in enumerate(shelves or SIM_SHELVES)
        ],
    )
    return sign_command(command, KEY)


def unlock_command(
    kiosk_id: str,
    *,
    door: int = 0,
    mode: UnlockMode = UnlockMode.PURCHASE,
    lifetime_s: float = 20.0,
    issued_ago_s: float = 0.0,
) -> UnlockCommand:
    issued = utc_now() - timedelta(seconds=issued_ago_s)
    command = UnlockCommand(
        command_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=lifetime_s),
        nonce=new_nonce(),
        session_id=uuid.uuid4(),
        door=door,
        mode=mode,
    )
    return sign_command(command, KEY)


class StandInServer:
    """The fleet server's side of the MQTT contract, for tests; see the module docstring."""

    def __init__(self, host: str, port: int, kiosk_id: str, *, acknowledge: bool = True) -> None:
        self.kiosk_id = kiosk_id
        self.acknowledge = acknowledge
        self.sales: list[SaleRecord] = []
        # Monotonic time at which the first copy of each session's sale arrived.
        self.sale_arrivals: dict[uuid.UUID, float] = {}
        self.events: list[KioskEvent] = []
        self.telemetry: list[Telemetry] = []
        self.status: list[str] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"stand-in-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *args: self._connected.clear()
        self._client.reconnect_delay_set(0.2, 1)
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("stand-in server could not subscribe")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        # Subscribe on every connection, so that a restarted broker serves the stand-in again.
        client.subscribe(
            [
                (kiosk_topic(self.kiosk_id, channel), 1)
                for channel in (Channel.SALES, Channel.EVENTS, Channel.TELEMETRY, Channel.STATUS)
            ]
        )
        self._connected.set()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.monotonic()
        channel = message.topic.rsplit("/", 1)[1]
        with self._lock:
            if channel == Channel.SALES:
                sale = parse_payload(SaleRecord, message.payload)
                self.sales.append(sale)
                self.sale_arrivals.setdefault(sale.session_id, arrived)
                if self.acknowledge:
                    self._ack(Ack(sale_ids=[sale.sale_id]))
            elif channel == Channel.EVENTS:
                event = parse_payload(KioskEvent, message.payload)
                self.events.append(event)
                if self.acknowledge:
                    self._ack(Ack(event_ids=[event.event_id]))
            elif channel == Channel.TELEMETRY:
                self.telemetry.append(parse_payload(Telemetry, message.payload))
            elif channel == Channel.STATUS:
                self.status.append(message.payload.decode())

    def _ack(self, ack: Ack) -> None:
        self._client.publish(kiosk_topic(self.kiosk_id, Channel.ACKS), encode_payload(ack), qos=1)

    def send(self, command: UnlockCommand | PlanogramCommand) -> None:
        if not self._connected.wait(30):
            raise AssertionError("stand-in server is not connected to the broker")
        info = self._client.publish(
            kiosk_topic(self.kiosk_id, Channel.COMMANDS), encode_payload(command), qos=1
        )
        info.wait_for_publish(10)

    def install_planogram(
        self, make_command: Callable[[str], PlanogramCommand], timeout_s: float
    ) -> None:
        """Send the planogram until the agent reports it in force and its board live.

        Commands are not retained, so one sent before the agent subscribed is lost, as
        the real server's would be; the server resends when the cabinet comes online.
        """
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent did not take the planogram in {timeout_s} s")
            self.send(make_command(self.kiosk_id))
            time.sleep(1.0)

    def send_raw(self, payload: bytes) -> None:
        self._client.publish(kiosk_topic(self.kiosk_id, Channel.COMMANDS), payload, qos=1)

    def unique_sales(self) -> dict[uuid.UUID, SaleRecord]:
        with self._lock:
            return {sale.session_id: sale for sale in self.sales}

    def sales_for(self, session_id: uuid.UUID) -> list[SaleRecord]:
        with self._lock:
            return [sale for sale in self.sales if sale.session_id == session_id]

    def events_of(self, event_type: str, session_id: uuid.UUID | None = None) -> list[KioskEvent]:
        with self._lock:
            return [
                event
                for event in self.events
                if event.type == event_type
                and (session_id is None or event.session_id == session_id)
            ]

    def session_states(self, session_id: uuid.UUID) -> list[str]:
        return [str(e.detail.get("state")) for e in self.events_of("session_state", session_id)]

    def ready(self) -> bool:
        with self._lock:
            last = self.telemetry[-1] if self.telemetry else None
        return (
            last is not None
            and last.serial_link.value == "up"
            and last.planogram_version is not None
            and last.session_state == "idle"
        )


class AgentProcess:
    """``python -m kiosk_agent.cli`` with a configuration file written for the test."""

    def __init__(
        self,
        directory: Path,
        *,
        kiosk_id: str,
        serial_port: str,
        broker: tuple[str, int],
        screen_port: int = 0,
        **settings: object,
    ) -> None:
        self.directory = directory
        self.config = directory / "agent.toml"
        values: dict[str, object] = {
            "development": True,
            "kiosk_id": kiosk_id,
            "hmac_key": KEY_HEX,
            "broker_host": broker[0],
            "broker_port": broker[1],
            "serial_port": serial_port,
            "data_dir": str(directory / "data"),
            "screen_port": screen_port or _free_port(),
            "heartbeat_interval_s": 0.5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
            "outbox_retry_base_s": 0.5,
            "outbox_retry_cap_s": 2.0,
            "open_timeout_s": 5.0,
            "settle_timeout_s": 10.0,
            "log_level": "INFO",
            **settings,
        }
        self.config.write_text(
            "".join(f"{key} = {_toml(value)}\n" for key, value in values.items()), encoding="utf-8"
        )
        self.log_path = directory / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIGUI_AGENT_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kiosk_agent.cli", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def kill(self) -> None:
        """End the agent at once, as a power cut would: no clean shutdown at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(5)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
