"""The generated Mosquitto password and ACL files, enforced by a real Mosquitto broker."""

import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session, sessionmaker

from conftest import find_free_port, find_mosquitto, skip_or_fail, stop_process, wait_for_port
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.services.broker_auth import (
    mosquitto_password_hash,
    verify_mosquitto_password,
)
from fleet_server.services.provisioning import broker_files, provision_cabinet, write_broker_files
from kiosk_agent.contract import Channel, kiosk_topic
from operations_helpers import SYSTEM
from server_helpers import World

pytest_plugins = ["server_fixtures"]

SERVICE_USER = "fleet-server"
SERVICE_PASSWORD = "server-broker-password-for-tests-0123"
WAIT_S = 10.0
LOOPBACK = "127.0.0.1"


def mosquitto_binary() -> str:
    binary = find_mosquitto()
    if binary is None:
        skip_or_fail("Mosquitto not installed: apt-get install mosquitto")
    return binary


@dataclass
class Credentials:
    a: str
    b: str


class Client:
    """A paho client with bounded waits for CONNACK, SUBACK and messages."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connect_result: ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.granted: list[ReasonCode] = []
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connect_result = reason_code
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.granted = reason_codes
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def connect(self) -> ReasonCode:
        # Paho retries a rejected connection by itself, so delay retries past the first CONNACK.
        self.paho.reconnect_delay_set(60, 60)
        self.paho.connect(LOOPBACK, self.port)
        self.paho.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK"
        assert self.connect_result is not None
        return self.connect_result

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self._subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self._subscribed.wait(WAIT_S), f"no SUBACK for {topic}"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        self.paho.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def credentials(
    world: World, seeded: sessionmaker[Session], settings: ServerSettings
) -> Credentials:
    with session_scope(seeded) as session:
        a = provision_cabinet(session, actor=SYSTEM, kiosk_id=world.a.kiosk_id, settings=settings)
        b = provision_cabinet(session, actor=SYSTEM, kiosk_id=world.b.kiosk_id, settings=settings)
    return Credentials(a=a.broker_password, b=b.broker_password)


@pytest.fixture
def broker_port(credentials: Credentials, seeded: sessionmaker[Session]) -> Iterator[int]:
    """Port of a private Mosquitto that uses the files written by broker-config."""
    binary = mosquitto_binary()
    # Mosquitto 2.0 reads the password and ACL files after dropping root privileges to the
    # "mosquitto" user, so the files live in a directory that user owns.
    workdir = Path(tempfile.mkdtemp(prefix="zhigui-acl-"))
    try:
        with session_scope(seeded) as session:
            files = broker_files(
                session, service_username=SERVICE_USER, service_password=SERVICE_PASSWORD
            )
        write_broker_files(files, workdir)
        port = find_free_port()
        config = workdir / "mosquitto.conf"
        config.write_text(
            f"listener {port} {LOOPBACK}\npersistence false\nlog_dest stderr\n"
            + (workdir / "zhigui.conf").read_text()
        )
        if os.geteuid() == 0:
            owner = pwd.getpwnam("mosquitto")
            for path in [workdir, *workdir.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        log_path = workdir / "mosquitto.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(LOOPBACK, port, process, log_path)
            yield port
        finally:
            stop_process(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def server(broker_port: int) -> Iterator[Client]:
    client = Client(broker_port, SERVICE_USER, SERVICE_PASSWORD)
    assert not client.connect().is_failure
    yield client
    client.close()


@pytest.fixture
def cabinet_a(broker_port: int, world: World, credentials: Credentials) -> Iterator[Client]:
    client = Client(broker_port, world.a.kiosk_id, credentials.a)
    assert not client.connect().is_failure
    yield client
    client.close()


def test_cabinet_sale_reaches_server(server: Client, cabinet_a: Client, world: World) -> None:
    granted = server.subscribe("zhigui/v1/kiosks/+/sales")
    sales = kiosk_topic(world.a.kiosk_id, Channel.SALES)

    cabinet_a.publish(sales, b"sale-1")

    assert not granted[0].is_failure
    assert server.next_message() == (sales, b"sale-1")


def test_cabinet_cannot_publish_for_another(
    server: Client, cabinet_a: Client, world: World
) -> None:
    server.subscribe("zhigui/v1/kiosks/#")
    forged = kiosk_topic(world.b.kiosk_id, Channel.SALES)
    own = kiosk_topic(world.a.kiosk_id, Channel.EVENTS)

    cabinet_a.publish(forged, b"forged")
    # The broker forwards one client's messages in order, so once the later message has
    # arrived the forged one would have arrived before it.
    cabinet_a.publish(own, b"marker")

    assert server.next_message() == (own, b"marker")
    assert server.messages.empty()


def test_cabinet_reads_only_its_own_commands(
    server: Client, cabinet_a: Client, world: World
) -> None:
    own = kiosk_topic(world.a.kiosk_id, Channel.COMMANDS)
    other = kiosk_topic(world.b.kiosk_id, Channel.COMMANDS)
    granted_own = cabinet_a.subscribe(own)
    cabinet_a.subscribe(other)
    cabinet_a.subscribe("zhigui/v1/kiosks/#")

    server.publish(other, b"for-b")
    server.publish(own, b"for-a")

    assert not granted_own[0].is_failure
    assert cabinet_a.next_message() == (own, b"for-a")
    assert cabinet_a.messages.empty()


def test_server_account_reads_all_and_shares(
    server: Client, broker_port: int, world: World, credentials: Credentials
) -> None:
    server.subscribe("$share/ingest/zhigui/v1/kiosks/+/sales")
    server.subscribe("zhigui/v1/kiosks/+/telemetry")
    cabinet_b = Client(broker_port, world.b.kiosk_id, credentials.b)
    assert not cabinet_b.connect().is_failure
    try:
        sales = kiosk_topic(world.b.kiosk_id, Channel.SALES)
        telemetry = kiosk_topic(world.b.kiosk_id, Channel.TELEMETRY)

        cabinet_b.publish(sales, b"sale-b")
        cabinet_b.publish(telemetry, b"heartbeat-b")

        received = {server.next_message(), server.next_message()}
    finally:
        cabinet_b.close()
    assert received == {(sales, b"sale-b"), (telemetry, b"heartbeat-b")}


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("AH-10357-0001", "wrong-password-123456", id="wrong-password"),
        pytest.param("AH-99999-9999", "any-password-1234567", id="unknown-user"),
        pytest.param(None, None, id="anonymous"),
    ],
)
def test_bad_credentials_refused(
    broker_port: int, world: World, username: str | None, password: str | None
) -> None:
    client = Client(broker_port, username, password)
    try:
        result = client.connect()
    finally:
        client.close()

    assert result.is_failure
    assert result.getName() in ("Not authorized", "Bad user name or password")


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        skip_or_fail("mosquitto_passwd not installed: apt-get install mosquitto")
    password_file = tmp_path / "passwd"
    subprocess.run(
        [tool, "-c", "-b", str(password_file), "cabinet", "s3cret-Passw0rd"],
        check=True,
        capture_output=True,
    )
    username, _, their_hash = password_file.read_text().strip().partition(":")
    ours = mosquitto_password_hash("s3cret-Passw0rd")

    assert username == "cabinet"
    assert their_hash.startswith("$7$101$")
    assert verify_mosquitto_password(their_hash, "s3cret-Passw0rd")
    assert not verify_mosquitto_password(their_hash, "s3cret-Passw0rd!")
    assert ours.split("$")[1:3] == their_hash.split("$")[1:3]
    assert len(ours) == len(their_hash)
    assert verify_mosquitto_password(ours, "s3cret-Passw0rd")
    assert not verify_mosquitto_password("$6$garbage", "s3cret-Passw0rd")
