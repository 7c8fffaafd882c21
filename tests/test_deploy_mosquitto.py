"""The production broker configuration deploy/mosquitto/mosquitto.conf, run by a real Mosquitto.

The module builds what the production guide builds, in a temporary directory instead of
/etc and /var/lib. It writes the settings file from deploy/server.env.example, migrates an
SQLite database and registers two cabinets in it. Then it runs `fleet-server provision`
and `fleet-server broker-config`, and makes the TLS certificates with the openssl
commands written in mosquitto.conf itself. Only ports and paths are changed in the
configuration, and the TLS listener is bound to 127.0.0.1.
"""

import asyncio
import os
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session

from conftest import find_free_port, find_mosquitto, skip_or_fail, stop_process, wait_for_port
from deploy_helpers import DEPLOY, MOSQUITTO_CONF, certificate_commands
from fleet_server.models import Building, Cabinet, LocationType, Operator, Placement, School
from kiosk_agent.config import AgentSettings, load_settings
from kiosk_agent.contract import (
    Ack,
    Channel,
    OutboxBacklog,
    SaleOutcome,
    SaleRecord,
    encode_payload,
    kiosk_topic,
    parse_payload,
    utc_now,
)
from kiosk_agent.mqtt_link import LinkOptions, MqttLink
from kiosk_agent.outbox import Outbox

pytestmark = pytest.mark.mosquitto

ENV_EXAMPLE_PATH = DEPLOY / "server.env.example"
LOOPBACK = "127.0.0.1"
# The name the certificate is made for in the test, in place of mqtt.example.edu.cn.
TLS_HOST = "localhost"
EXAMPLE_BROKER_HOST = "mqtt.example.edu.cn"
CERTS_DIR = "/etc/mosquitto/certs"
SERVICE_USER = "fleet-server"
KIOSK_A = "AH-10357-0001"
KIOSK_B = "AH-10359-0001"
KIOSK_C = "AH-10357-0002"
WAIT_S = 10.0
COMMAND_TIMEOUT_S = 60


# --- Files of the deployment ----------------------------------------------------------------


def production_conf(conf_text: str, workdir: Path, plain_port: int, tls_port: int) -> str:
    """Return mosquitto.conf with its ports and paths moved into ``workdir``.

    Each replaced line must exist exactly once, so a change to the shipped file that
    this test does not know about fails here instead of testing something else.
    """
    replacements = {
        "persistence_location /var/lib/mosquitto/": f"persistence_location {workdir}/data/",
        "listener 1883 127.0.0.1": f"listener {plain_port} {LOOPBACK}",
        "listener 8883": f"listener {tls_port} {LOOPBACK}",
        f"certfile {CERTS_DIR}/server.crt": f"certfile {workdir}/certs/server.crt",
        f"keyfile {CERTS_DIR}/server.key": f"keyfile {workdir}/certs/server.key",
        "include_dir /etc/mosquitto/zhigui": f"include_dir {workdir}/zhigui",
    }
    lines = conf_text.splitlines()
    for old, new in replacements.items():
        assert lines.count(old) == 1, f"mosquitto.conf should contain the line {old!r} once"
        lines[lines.index(old)] = new
    return "\n".join(lines) + "\n"


def settings_file_text(example: str, values: dict[str, str]) -> str:
    """Return server.env.example with the given settings replaced; each must be in the file."""
    lines = example.splitlines()
    for name, value in values.items():
        [index] = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        lines[index] = f"{name}={value}"
    return "\n".join(lines) + "\n"


def fleet_server(settings_file: Path, *args: str) -> str:
    """Run a `fleet-server` command with the settings file, as an operator would."""
    program = Path(sys.executable).with_name("fleet-server")
    result = subprocess.run(
        [str(program), "--settings-file", str(settings_file), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env={key: value for key, value in os.environ.items() if not key.startswith("ZHIGUI_")},
        check=False,
    )
    assert result.returncode == 0, f"fleet-server {args}: {result.stdout}{result.stderr}"
    return result.stdout


def register_cabinet(database_url: str, *, kiosk_id: str, school_name: str) -> None:
    """Register a cabinet at a new placement, as an operator does through the API."""
    engine = sa.create_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            school_id = session.scalar(sa.select(School.id).where(School.name == school_name))
            assert school_id is not None, f"{school_name} is missing from the seed data"
            operator = session.scalar(sa.select(Operator).where(Operator.name == "测试运营公司"))
            if operator is None:
                operator = Operator(name="测试运营公司", name_en="Test Operations")
                session.add(operator)
            building = Building(
                school_id=school_id,
                name=f"学生公寓 {kiosk_id[-1]} 号楼",
                location_type=LocationType.DORMITORY,
            )
            placement = Placement(building=building, floor=1, description="一楼大厅")
            session.add_all([building, placement])
            session.flush()
            session.add(Cabinet(kiosk_id=kiosk_id, placement=placement, operator_id=operator.id))
    finally:
        engine.dispose()


def chown_to_mosquitto(*paths: Path) -> None:
    """Give paths to the "mosquitto" user, which a broker started as root switches to.

    As in the guide: Debian's package creates /var/lib/mosquitto for that user, and the
    operator gives it the password file once, which `broker-config` rewrites in place.
    """
    if os.geteuid() != 0:
        return
    owner = pwd.getpwnam("mosquitto")
    for path in paths:
        os.chown(path, owner.pw_uid, owner.pw_gid)


@dataclass
class Deployment:
    workdir: Path
    settings_file: Path
    database_url: str
    config: Path
    plain_port: int
    tls_port: int
    ca_file: Path
    service_password: str
    agents: dict[str, AgentSettings]


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """Certificates, database, cabinet files and broker files, made as the guide makes them."""
    if find_mosquitto() is None:
        skip_or_fail("Mosquitto not installed: apt-get install mosquitto")
    if shutil.which("openssl") is None:
        skip_or_fail("openssl not installed: apt-get install openssl")
    # Under /tmp, not pytest's 0700 directory, because the broker's user must enter it.
    workdir = Path(tempfile.mkdtemp(prefix="zhigui-deploy-mosquitto-"))
    try:
        yield make_deployment(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def make_deployment(workdir: Path) -> Deployment:
    workdir.chmod(0o755)
    (workdir / "data").mkdir()
    certs = workdir / "certs"
    conf_text = MOSQUITTO_CONF.read_text(encoding="utf-8")

    commands = certificate_commands(conf_text)
    assert any(command.startswith("openssl x509 -req") for command in commands), commands
    script = "set -e\n" + "\n".join(
        command.replace(CERTS_DIR, str(certs)).replace(EXAMPLE_BROKER_HOST, TLS_HOST)
        for command in commands
        # Without root there is no other user to give the key to.
        if os.geteuid() == 0 or not command.startswith("chown")
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"certificate commands failed:\n{script}\n{result.stderr}"

    database_url = f"sqlite:///{workdir / 'zhigui.db'}"
    service_password = secrets.token_urlsafe(32)
    settings_file = workdir / "server.env"
    settings_file.write_text(
        settings_file_text(
            ENV_EXAMPLE_PATH.read_text(encoding="utf-8"),
            {
                "ZHIGUI_DATABASE_URL": database_url,
                "ZHIGUI_SECRET_KEY": secrets.token_urlsafe(48),
                "ZHIGUI_MQTT_PASSWORD": service_password,
                "ZHIGUI_CABINET_BROKER_HOST": TLS_HOST,
            },
        ),
        encoding="utf-8",
    )
    fleet_server(settings_file, "migrate")
    fleet_server(settings_file, "seed")
    register_cabinet(database_url, kiosk_id=KIOSK_A, school_name="安徽大学")
    register_cabinet(database_url, kiosk_id=KIOSK_B, school_name="合肥工业大学")
    cabinet_files = workdir / "cabinets"
    agents = {}
    for kiosk_id in (KIOSK_A, KIOSK_B):
        fleet_server(settings_file, "provision", kiosk_id, "--out", str(cabinet_files))
        agents[kiosk_id] = load_agent_settings(cabinet_files, kiosk_id, certs / "ca.crt")
    fleet_server(settings_file, "broker-config", "--out", str(workdir / "zhigui"))

    plain_port = find_free_port()
    tls_port = find_free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(production_conf(conf_text, workdir, plain_port, tls_port), encoding="utf-8")
    chown_to_mosquitto(workdir / "data", workdir / "zhigui" / "passwd")
    return Deployment(
        workdir=workdir,
        settings_file=settings_file,
        database_url=database_url,
        config=config,
        plain_port=plain_port,
        tls_port=tls_port,
        ca_file=certs / "ca.crt",
        service_password=service_password,
        agents=agents,
    )


def load_agent_settings(directory: Path, kiosk_id: str, ca_file: Path) -> AgentSettings:
    """Load a provisioned agent file after adding the CA line that the guide adds."""
    path = directory / f"{kiosk_id}.agent.toml"
    with path.open("a", encoding="utf-8") as file:
        file.write(f'broker_tls_ca_file = "{ca_file}"\n')
    return load_settings(path)


class Broker:
    """The Mosquitto process of a deployment, which a test can stop, start and reload."""

    def __init__(self, deployment: Deployment) -> None:
        binary = find_mosquitto()
        assert binary is not None
        self.binary = binary
        self.deployment = deployment
        self.log = deployment.workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.deployment.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(LOOPBACK, self.deployment.plain_port, self.process, self.log)
        wait_for_port(LOOPBACK, self.deployment.tls_port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)


@pytest.fixture
def broker(deployment: Deployment) -> Iterator[Broker]:
    broker = Broker(deployment)
    broker.start()
    yield broker
    broker.stop()


# --- MQTT clients ---------------------------------------------------------------------------


class Client:
    """A paho client with bounded waits for CONNACK, SUBACK and messages."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        ca_file: Path | None = None,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.connect_result: ReasonCode | None = None
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self._subscribed = threading.Event()
        self.granted: list[ReasonCode] = []
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        if ca_file is not None:
            # The same call the agent makes for broker_tls_ca_file.
            self.paho.tls_set(ca_certs=str(ca_file))
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
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
        self.session_present = flags.session_present
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnected.set()

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
        self.messages.put((message.topic, bytes(message.payload), bool(message.retain)))

    def connect(self, host: str = LOOPBACK) -> ReasonCode:
        # Paho retries a rejected connection by itself, so delay retries past the first CONNACK.
        self.paho.reconnect_delay_set(60, 60)
        self.paho.connect(host, self.port)
        self.paho.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK"
        assert self.connect_result is not None
        return self.connect_result

    def subscribe(self, topic: str) -> ReasonCode:
        self._subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self._subscribed.wait(WAIT_S), f"no SUBACK for {topic}"
        [granted] = self.granted
        return granted

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def next_message(self) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def server(deployment: Deployment, broker: Broker) -> Iterator[Client]:
    """The fleet server's account on the plain loopback listener."""
    client = Client(deployment.plain_port, SERVICE_USER, deployment.service_password)
    assert not client.connect().is_failure
    yield client
    client.close()


def cabinet_client(deployment: Deployment, kiosk_id: str, password: str | None = None) -> Client:
    """Return a client on the TLS listener with a cabinet's account from its agent file."""
    agent = deployment.agents[kiosk_id]
    assert agent.broker_password is not None
    assert agent.broker_tls_ca_file is not None
    return Client(
        deployment.tls_port,
        agent.mqtt_username,
        password if password is not None else agent.broker_password.get_secret_value(),
        ca_file=agent.broker_tls_ca_file,
        client_id=kiosk_id,
    )


@pytest.fixture
def cabinet_a(deployment: Deployment, broker: Broker) -> Iterator[Client]:
    client = cabinet_client(deployment, KIOSK_A)
    assert not client.connect(TLS_HOST).is_failure
    yield client
    client.close()


# --- Tests ----------------------------------------------------------------------------------


def test_agent_file_points_at_tls_listener(deployment: Deployment) -> None:
    agent = deployment.agents[KIOSK_A]

    assert agent.broker_host == TLS_HOST
    assert agent.broker_port == 8883
    assert agent.broker_tls is True
    assert agent.broker_tls_ca_file == deployment.ca_file
    assert agent.mqtt_username == KIOSK_A


def test_cabinet_publishes_own_topics(server: Client, cabinet_a: Client) -> None:
    assert not server.subscribe("zhigui/v1/kiosks/#").is_failure
    sent = [
        (kiosk_topic(KIOSK_A, channel), f"payload-{channel.value}".encode())
        for channel in (Channel.SALES, Channel.EVENTS, Channel.TELEMETRY, Channel.STATUS)
    ]

    for topic, payload in sent:
        cabinet_a.publish(topic, payload)

    received = [server.next_message()[:2] for _ in sent]
    assert received == sent


def test_agent_link_delivers_sale_over_tls(
    deployment: Deployment, server: Client, tmp_path: Path
) -> None:
    """The agent's own MQTT link, with its provisioned file, over the TLS listener."""
    # The agent file names the production port, and the test listener runs on a free one.
    agent = deployment.agents[KIOSK_A].model_copy(update={"broker_port": deployment.tls_port})
    assert not server.subscribe(kiosk_topic(KIOSK_A, Channel.SALES)).is_failure
    now = utc_now()
    sale = SaleRecord(
        sale_id=uuid.uuid4(),
        kiosk_id=KIOSK_A,
        session_id=uuid.uuid4(),
        outcome=SaleOutcome.NOTHING_TAKEN,
        opened_at=now,
        closed_at=now,
        recorded_at=now,
        planogram_version=1,
    )

    async def deliver(outbox: Outbox) -> OutboxBacklog:
        link = MqttLink(
            LinkOptions.from_settings(agent, agent_version="test"),
            outbox=outbox,
            on_command=lambda command: None,
        )
        await link.start()
        try:
            assert await link.wait_connected(WAIT_S), "the agent did not connect over TLS"
            outbox.record_sale(sale, in_transaction=None)
            link.notify_outbox()
            received = await asyncio.to_thread(messages_until, server, Channel.SALES)
            assert parse_payload(SaleRecord, received) == sale
            ack = Ack(sale_ids=[sale.sale_id], event_ids=[])
            server.publish(kiosk_topic(KIOSK_A, Channel.ACKS), encode_payload(ack))
            deadline = time.monotonic() + WAIT_S
            while outbox.backlog().sales and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return outbox.backlog()
        finally:
            await link.stop()

    with Outbox(tmp_path / "outbox.db") as outbox:
        backlog = asyncio.run(deliver(outbox))
    # The link leaves a retained status, which later tests on this broker would receive.
    cabinet = cabinet_client(deployment, KIOSK_A)
    assert not cabinet.connect(TLS_HOST).is_failure
    cabinet.publish(kiosk_topic(KIOSK_A, Channel.STATUS), b"", retain=True)
    cabinet.close()

    assert backlog.sales == 0


def messages_until(client: Client, channel: Channel) -> bytes:
    """Return the payload of the next message on ``channel``, skipping the others."""
    while True:
        topic, payload, _ = client.next_message()
        if topic == kiosk_topic(KIOSK_A, channel):
            return payload


def test_cabinet_receives_own_commands(server: Client, cabinet_a: Client) -> None:
    commands = kiosk_topic(KIOSK_A, Channel.COMMANDS)
    assert not cabinet_a.subscribe(commands).is_failure

    server.publish(commands, b"unlock")

    assert cabinet_a.next_message() == (commands, b"unlock", False)


@pytest.mark.parametrize("case", ["wrong-password", "other-cabinets-name", "anonymous"])
def test_bad_credentials_rejected(deployment: Deployment, broker: Broker, case: str) -> None:
    password_a = deployment.agents[KIOSK_A].broker_password
    assert password_a is not None
    if case == "wrong-password":
        client = cabinet_client(deployment, KIOSK_A, "wrong-password-0123456789abcdef")
    elif case == "other-cabinets-name":
        client = cabinet_client(deployment, KIOSK_A)
        client.paho.username_pw_set(KIOSK_B, password_a.get_secret_value())
    else:
        client = Client(deployment.tls_port, None, None, ca_file=deployment.ca_file)
    try:
        result = client.connect(TLS_HOST)
    finally:
        client.close()

    assert result.is_failure
    assert result.getName() in ("Not authorized", "Bad user name or password")


def test_plain_listener_rejects_anonymous(deployment: Deployment, broker: Broker) -> None:
    client = Client(deployment.plain_port, None, None)
    try:
        result = client.connect()
    finally:
        client.close()

    assert result.is_failure


def test_cabinet_cannot_publish_for_another(server: Client, cabinet_a: Client) -> None:
    server.subscribe("zhigui/v1/kiosks/#")
    forged = kiosk_topic(KIOSK_B, Channel.SALES)
    own = kiosk_topic(KIOSK_A, Channel.EVENTS)

    # MQTT 3.1.1 has no negative PUBACK: the broker acknowledges the forged message and
    # drops it. It forwards one client's messages in order, so once the later message has
    # arrived, the forged one would have arrived before it.
    cabinet_a.publish(forged, b"forged")
    cabinet_a.publish(own, b"marker")

    assert server.next_message() == (own, b"marker", False)
    assert server.messages.empty()


def test_oversized_packet_disconnects(server: Client, cabinet_a: Client) -> None:
    server.subscribe("zhigui/v1/kiosks/#")
    sales = kiosk_topic(KIOSK_A, Channel.SALES)

    # 300 KiB, above the contract's limit of 256 KiB of payload.
    cabinet_a.paho.publish(sales, b"x" * 300 * 1024, qos=1)

    assert cabinet_a.disconnected.wait(WAIT_S)
    assert server.messages.empty()


def test_cabinet_cannot_read_another(server: Client, cabinet_a: Client) -> None:
    other = kiosk_topic(KIOSK_B, Channel.COMMANDS)
    own = kiosk_topic(KIOSK_A, Channel.COMMANDS)
    cabinet_a.subscribe(other)
    cabinet_a.subscribe(own)

    server.publish(other, b"for-b")
    server.publish(own, b"for-a")

    assert cabinet_a.next_message() == (own, b"for-a", False)
    assert cabinet_a.messages.empty()


def test_queue_and_retained_status_survive_restart(
    deployment: Deployment, broker: Broker, cabinet_a: Client
) -> None:
    sales = kiosk_topic(KIOSK_A, Channel.SALES)
    status = kiosk_topic(KIOSK_A, Channel.STATUS)
    durable = Client(
        deployment.plain_port,
        SERVICE_USER,
        deployment.service_password,
        client_id="durable-ingest",
        clean_session=False,
    )
    durable.connect()
    durable.subscribe(sales)
    durable.close()
    sent = [f"sale-{number}".encode() for number in range(3)]

    for payload in sent:
        cabinet_a.publish(sales, payload)
    cabinet_a.publish(status, b"online", retain=True)
    cabinet_a.close()
    broker.stop()
    broker.start()
    durable = Client(
        deployment.plain_port,
        SERVICE_USER,
        deployment.service_password,
        client_id="durable-ingest",
        clean_session=False,
    )
    durable.connect()
    fresh = Client(deployment.plain_port, SERVICE_USER, deployment.service_password)
    fresh.connect()
    try:
        queued = [durable.next_message() for _ in sent]
        fresh.subscribe(status)
        retained = fresh.next_message()
    finally:
        durable.close()
        fresh.close()

    assert durable.session_present is True
    assert queued == [(sales, payload, False) for payload in sent]
    assert retained == (status, b"online", True)


def test_reload_admits_new_cabinet(deployment: Deployment, broker: Broker) -> None:
    register_cabinet(deployment.database_url, kiosk_id=KIOSK_C, school_name="安徽大学")
    cabinet_files = deployment.workdir / "cabinets"
    fleet_server(deployment.settings_file, "provision", KIOSK_C, "--out", str(cabinet_files))
    deployment.agents[KIOSK_C] = load_agent_settings(cabinet_files, KIOSK_C, deployment.ca_file)
    before = cabinet_client(deployment, KIOSK_C)
    try:
        rejected = before.connect(TLS_HOST)
    finally:
        before.close()

    fleet_server(
        deployment.settings_file, "broker-config", "--out", str(deployment.workdir / "zhigui")
    )
    broker.reload()
    after = accepted_after_reload(deployment, KIOSK_C)

    assert rejected.is_failure
    assert not after.is_failure


def accepted_after_reload(deployment: Deployment, kiosk_id: str) -> ReasonCode:
    """Connect until the broker has reloaded its password file, or WAIT_S has passed."""
    deadline = time.monotonic() + WAIT_S
    while True:
        client = cabinet_client(deployment, kiosk_id)
        try:
            result = client.connect(TLS_HOST)
        finally:
            client.close()
        if not result.is_failure or time.monotonic() > deadline:
            return result
        time.sleep(0.2)
