"""Publish signed commands and acknowledgements to cabinets over MQTT.

One paho client per server process, on paho's own network thread
(``loop_start``); ``publish`` is safe to call from any thread. Commands are
signed with the cabinet's own key here, just before they are sent, so that no
unsigned command ever leaves the server. Publishing waits until the broker
has accepted the message (QoS 1 PUBACK), because a purchase must not report
"unlocking" for a command that never reached the broker.
"""

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# BrokerAddress is re-exported because callers and tests import it from here.
from fleet_server.messaging.client import BrokerAddress as BrokerAddress
from fleet_server.messaging.client import create_paho_client
from kiosk_agent.contract import (
    Ack,
    Channel,
    PlanogramCommand,
    UnlockCommand,
    encode_payload,
    kiosk_topic,
)
from kiosk_agent.signing import sign_command

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0


def _sign(
    command: UnlockCommand | PlanogramCommand, key: bytes
) -> UnlockCommand | PlanogramCommand:
    if isinstance(command, UnlockCommand):
        return sign_command(command, key)
    return sign_command(command, key)


class PublishError(Exception):
    """The broker did not accept a message in time; the caller must treat it as not sent."""


class CommandPublisher(Protocol):
    """Interface to MQTT that the API and the ingest workers use."""

    def send_command(self, command: UnlockCommand | PlanogramCommand, key: bytes) -> None: ...

    def send_ack(self, kiosk_id: str, ack: Ack) -> None: ...


class MqttPublisher:
    """A ``CommandPublisher`` on a real broker; see the module docstring."""

    def __init__(self, broker: BrokerAddress, *, client_id: str | None = None) -> None:
        self.broker = broker
        self._connected = threading.Event()
        self._client = create_paho_client(
            broker, client_id or f"fleet-server-{uuid.uuid4().hex[:12]}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and start paho's thread; raises ``PublishError`` if no broker accepts it."""
        self._client.connect_async(self.broker.host, self.broker.port)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.stop()
            raise PublishError(
                f"cannot connect to the MQTT broker at {self.broker.host}:{self.broker.port}"
            )

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("MQTT broker refused the server's connection: %s", reason_code)
            return
        logger.info("command publisher connected to %s:%d", self.broker.host, self.broker.port)
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        logger.warning("command publisher disconnected: %s; paho reconnects", reason_code)

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (ValueError, RuntimeError) as exc:
            raise PublishError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise PublishError(f"the broker did not confirm {topic} within {PUBLISH_TIMEOUT_S} s")

    def send_command(self, command: UnlockCommand | PlanogramCommand, key: bytes) -> None:
        signed = _sign(command, key)
        self._publish(kiosk_topic(command.kiosk_id, Channel.COMMANDS), encode_payload(signed))
        logger.info("sent %s command %s to %s", command.type, command.command_id, command.kiosk_id)

    def send_ack(self, kiosk_id: str, ack: Ack) -> None:
        self._publish(kiosk_topic(kiosk_id, Channel.ACKS), encode_payload(ack))


class RecordingPublisher:
    """A ``CommandPublisher`` that keeps what it would send, for code paths without a broker.

    The embedded demo and the API tests that do not test MQTT itself use it; tests of the
    MQTT path use ``MqttPublisher`` against a real broker.
    """

    def __init__(self) -> None:
        self.commands: list[UnlockCommand | PlanogramCommand] = []
        self.acks: list[tuple[str, Ack]] = []
        self.fail_next = False

    def send_command(self, command: UnlockCommand | PlanogramCommand, key: bytes) -> None:
        if self.fail_next:
            self.fail_next = False
            raise PublishError("simulated broker failure")
        self.commands.append(_sign(command, key))

    def send_ack(self, kiosk_id: str, ack: Ack) -> None:
        self.acks.append((kiosk_id, ack))


def unlock_commands(publisher: RecordingPublisher) -> Sequence[UnlockCommand]:
    return [c for c in publisher.commands if isinstance(c, UnlockCommand)]
