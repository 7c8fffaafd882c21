"""The paho-mqtt connection that the server's subscribers share.

``SubscriberClient`` connects to the broker, subscribes to its topic filters on every
connection and hands each message to a callback. The ingest worker and the monitoring
subscriber both run on it. Paho's network thread (``loop_start``) runs the socket and the
callbacks, and reconnects by itself with a delay that doubles from
RECONNECT_MIN_DELAY_S up to RECONNECT_MAX_DELAY_S.

Sessions are clean (MQTT 3.1.1, paho's default), so the broker keeps no subscriptions or
queued messages across connections. That is why the client subscribes again after every
reconnect. Cabinets resend unacknowledged sales and events and the broker retains each
cabinet's last status, so a reconnect loses no sale, event or current status.
"""

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30

# (topic filter, QoS) pairs, as paho's subscribe takes them.
Subscriptions = Sequence[tuple[str, int]]
MessageHandler = Callable[[str, bytes], None]


@dataclass
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None


class BrokerConnectionError(ConnectionError):
    """Raised when the broker does not accept the connection or the subscriptions in time."""


def create_paho_client(broker: BrokerAddress, client_id: str) -> mqtt.Client:
    """Return a paho client with the broker's credentials, TLS and reconnect delays set."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls_ca_file:
        client.tls_set(ca_certs=broker.tls_ca_file)
    client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
    return client


def message_topic(message: mqtt.MQTTMessage) -> str:
    """Return the message's topic, or its bytes' repr when they are not UTF-8."""
    try:
        return message.topic
    except UnicodeDecodeError:
        return repr(message._topic)


class SubscriberClient:
    """A paho client that subscribes on every connection and passes messages to a handler.

    ``on_message`` runs on paho's network thread with the topic and the payload. It must
    return quickly, and it may block to slow the broker down, because paho stops reading
    the socket while it waits. An exception it raises is logged, and the message is lost.
    """

    def __init__(
        self,
        broker: BrokerAddress,
        *,
        name: str,
        client_id: str | None,
        client_id_prefix: str,
        subscriptions: Subscriptions,
        on_message: MessageHandler,
        max_inflight_messages: int | None = None,
    ) -> None:
        self.broker = broker
        self.client_id = client_id or f"{client_id_prefix}-{uuid.uuid4().hex[:12]}"
        self._name = name
        self._subscriptions = list(subscriptions)
        self._handle_message = on_message
        self._subscribed = threading.Event()
        self._closing = threading.Event()
        self._outage_logged = False

        self._client = create_paho_client(broker, self.client_id)
        if max_inflight_messages is not None:
            self._client.max_inflight_messages_set(max_inflight_messages)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def topic_filters(self) -> list[str]:
        return [topic for topic, _qos in self._subscriptions]

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and subscribe, or close and raise BrokerConnectionError after timeout_s."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise BrokerConnectionError(
                f"the MQTT broker at {self.broker.host}:{self.broker.port} did not confirm the "
                f"{self._name} subscriptions within {timeout_s:.0f} s"
            )

    def unsubscribe(self) -> None:
        """Unsubscribe but stay connected, so the owner can still publish."""
        self._closing.set()
        if self._client.is_connected():
            self._client.unsubscribe(self.topic_filters)

    def publish(self, topic: str, payload: bytes, qos: int) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        self._closing.set()
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks (network thread) ----------------------------------------------------
    # Each callback catches its exceptions, because paho re-raises them and its thread ends.

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                logger.error(
                    "MQTT broker rejected the connection of the %s %s: %s",
                    self._name,
                    self.client_id,
                    reason_code,
                )
                return
            if self._outage_logged:
                logger.info("%s %s reconnected", self._name, self.client_id)
            self._outage_logged = False
            client.subscribe(self._subscriptions)
        except Exception:
            logger.exception("%s %s: on_connect failed", self._name, self.client_id)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            logger.error("MQTT broker rejected the %s subscriptions: %s", self._name, failed)
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # One warning per outage; paho's reconnect attempts are not logged one by one.
        if self._closing.is_set() or self._outage_logged:
            return
        logger.warning(
            "%s %s lost the broker (%s); paho reconnects", self._name, self.client_id, reason_code
        )
        self._outage_logged = True

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        topic = message_topic(message)
        try:
            self._handle_message(topic, bytes(message.payload))
        except Exception:
            logger.exception("%s failed on a message of %s", self._name, topic[:256])
