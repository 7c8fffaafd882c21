"""The server's command publisher against a real broker."""

import threading
import uuid
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet_server.messaging.publisher import (
    BrokerAddress,
    MqttPublisher,
    PublishError,
    RecordingPublisher,
)
from kiosk_agent.contract import (
    Ack,
    Channel,
    UnlockCommand,
    UnlockMode,
    kiosk_topic,
    parse_command,
    parse_payload,
    utc_now,
)
from kiosk_agent.signing import compute_signature, new_nonce

KEY = bytes.fromhex("3c9e" * 16)


def _command(kiosk_id: str) -> UnlockCommand:
    now = utc_now()
    return UnlockCommand(
        command_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=10),
        nonce=new_nonce(),
        session_id=uuid.uuid4(),
        door=0,
        mode=UnlockMode.PURCHASE,
    )


@pytest.mark.mosquitto
def test_published_command_arrives_signed(mqtt_broker: tuple[str, int]) -> None:
    received: list[bytes] = []
    arrived = threading.Event()
    subscribed = threading.Event()
    listener = mqtt.Client(CallbackAPIVersion.VERSION2)
    listener.on_subscribe = lambda *args: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received.append(message.payload)
        arrived.set()

    listener.on_message = on_message
    listener.connect(*mqtt_broker)
    listener.loop_start()
    listener.subscribe(
        [(kiosk_topic("AH-9", Channel.COMMANDS), 1), (kiosk_topic("AH-9", Channel.ACKS), 1)]
    )
    assert subscribed.wait(10)
    publisher = MqttPublisher(BrokerAddress(*mqtt_broker))
    publisher.start()
    try:
        command = _command("AH-9")

        publisher.send_command(command, KEY)
        assert arrived.wait(10)
        arrived.clear()
        publisher.send_ack("AH-9", Ack(sale_ids=[command.session_id]))
        assert arrived.wait(10)
    finally:
        publisher.stop()
        listener.loop_stop()
        listener.disconnect()

    sent = parse_command(received[0])
    assert isinstance(sent, UnlockCommand)
    assert sent.session_id == command.session_id
    assert sent.signature == compute_signature(sent, KEY)
    assert parse_payload(Ack, received[1]).sale_ids == [command.session_id]


def test_publisher_without_broker_raises() -> None:
    publisher = MqttPublisher(BrokerAddress("127.0.0.1", 9))

    with pytest.raises(PublishError, match=r"127\.0\.0\.1:9"):
        publisher.start(timeout_s=1.0)


def test_recording_publisher_signs_and_can_fail() -> None:
    publisher = RecordingPublisher()
    command = _command("AH-1")

    publisher.send_command(command, KEY)
    publisher.fail_next = True

    assert publisher.commands[0].signature == compute_signature(publisher.commands[0], KEY)
    with pytest.raises(PublishError):
        publisher.send_command(command, KEY)
