"""Round trips through the MQTT broker and the PostgreSQL database that conftest.py provides."""

import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

WAIT_TIMEOUT_S = 10.0


class ConnectedClient:
    """A paho-mqtt client with its network loop running and its callbacks recorded."""

    def __init__(self, host: str, port: int, role: str) -> None:
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self.granted: list[ReasonCode] = []
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"zhigui-test-{role}-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self.connect_reason = reason
        self.connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        self.granted = list(reasons)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.mosquitto
def test_mqtt_qos1_round_trip(mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    topic = f"zhigui/test/{uuid.uuid4().hex}/door"
    payload = "柜门已关闭 door closed".encode()

    subscriber = ConnectedClient(host, port, "subscriber")
    try:
        assert subscriber.connected.wait(WAIT_TIMEOUT_S), "subscriber received no CONNACK"
        assert subscriber.connect_reason is not None
        assert not subscriber.connect_reason.is_failure, subscriber.connect_reason

        subscriber.client.subscribe(topic, qos=1)
        assert subscriber.subscribed.wait(WAIT_TIMEOUT_S), "subscriber received no SUBACK"
        # In MQTT 3.1.1 the SUBACK code is the granted QoS.
        assert [reason.value for reason in subscriber.granted] == [1]

        publisher = ConnectedClient(host, port, "publisher")
        try:
            assert publisher.connected.wait(WAIT_TIMEOUT_S), "publisher received no CONNACK"
            assert publisher.connect_reason is not None
            assert not publisher.connect_reason.is_failure, publisher.connect_reason

            info = publisher.client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=WAIT_TIMEOUT_S)
            assert info.is_published(), "publisher received no PUBACK"
        finally:
            publisher.close()

        try:
            message = subscriber.messages.get(timeout=WAIT_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"no message arrived on {topic!r} within {WAIT_TIMEOUT_S} s")
        assert message.topic == topic
        assert message.payload == payload
        assert message.qos == 1
        assert subscriber.messages.empty(), "the broker delivered the message more than once"
    finally:
        subscriber.close()


@pytest.mark.postgres
def test_postgres_insert_select_round_trip(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"

    metadata = sa.MetaData()
    products = sa.Table(
        f"test_products_{uuid.uuid4().hex[:12]}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("price_fen", sa.Integer, nullable=False),  # 1 fen = 0.01 yuan
    )
    rows = [
        {"id": 1, "name": "金寨猕猴桃 Jinzhai kiwifruit", "price_fen": 2990},
        {"id": 2, "name": "岳西翠兰 Yuexi green tea", "price_fen": 4500},
    ]

    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(products.insert(), rows)

        with engine.connect() as connection:
            selected = connection.execute(sa.select(products).order_by(products.c.id))
            selected_rows = [dict(row) for row in selected.mappings()]
            total = connection.execute(sa.select(sa.func.sum(products.c.price_fen))).scalar_one()

        assert selected_rows == rows
        assert total == 7490
    finally:
        metadata.drop_all(engine)
        engine.dispose()
