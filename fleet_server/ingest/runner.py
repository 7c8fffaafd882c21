"""Build ingest workers from the server settings, and run one until SIGTERM or SIGINT."""

import gc
import logging
import signal
import threading
from types import FrameType

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.config import ServerSettings, SettingsError, load_settings
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope
from fleet_server.ingest.store import BatchStore, IngestHooks
from fleet_server.ingest.worker import IngestWorker
from fleet_server.messaging.client import BrokerAddress
from fleet_server.messaging.publisher import CommandPublisher
from fleet_server.models.base import utc_now
from fleet_server.monitoring.subscriber import MonitoringSubscriber
from fleet_server.services.monitoring import MonitoringPolicy, apply_sales_to_stock, handle_event
from fleet_server.services.purchases import expire_overdue_sessions

logger = logging.getLogger(__name__)

# Seconds between two sweeps that mark overdue purchase sessions expired.
EXPIRY_SWEEP_INTERVAL_S = 10.0
# Allocations between two young-generation garbage collections (Python's default is 700).
# Each batch allocates hundreds of thousands of short-lived objects, and with the default
# the collector took about a fifth of a worker's CPU time.
GC_YOUNG_THRESHOLD = 50_000

EXIT_OK = 0
EXIT_FAILURE = 1


def broker_address(settings: ServerSettings) -> BrokerAddress:
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    return BrokerAddress(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_username,
        password=password,
    )


def monitoring_hooks() -> IngestHooks:
    """Return the hooks that keep stock and alerts current from each new sale and event."""
    return IngestHooks(
        sale_handlers=[lambda db, sales: apply_sales_to_stock(db, sales)],
        event_handlers=[lambda db, event, at: handle_event(db, event, received_at=at)],
    )


def build_monitoring_subscriber(
    settings: ServerSettings,
    session_factory: sessionmaker[Session],
    publisher: CommandPublisher | None = None,
) -> MonitoringSubscriber:
    """Return the subscriber that follows every cabinet's status and telemetry."""
    return MonitoringSubscriber(
        broker_address(settings),
        session_factory,
        policy=MonitoringPolicy.from_settings(settings),
        publisher=publisher,
    )


def build_ingest_worker(
    settings: ServerSettings,
    session_factory: sessionmaker[Session],
    *,
    hooks: IngestHooks | None = None,
    client_id: str | None = None,
) -> IngestWorker:
    """Return a worker on the settings' broker and group that commits through the factory."""

    def expire_overdue() -> None:
        with session_scope(session_factory) as db:
            expire_overdue_sessions(db, now=utc_now())

    if hooks is None:
        hooks = monitoring_hooks()
    return IngestWorker(
        broker=broker_address(settings),
        store=BatchStore(session_factory, hooks=hooks),
        group=settings.ingest_group if settings.ingest_shared_subscription else None,
        batch_size=settings.ingest_batch_size,
        batch_latency_s=settings.ingest_batch_latency_ms / 1000,
        maintenance=expire_overdue,
        maintenance_interval_s=EXPIRY_SWEEP_INTERVAL_S,
        client_id=client_id,
    )


def run_worker(settings: ServerSettings, engine: Engine) -> int:
    """Run one worker on ``engine`` until SIGTERM or SIGINT and return the exit status.

    Raises ConnectionError when the broker does not accept the subscriptions in time.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d received; stopping the ingest worker", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    factory = create_session_factory(engine)
    worker = build_ingest_worker(settings, factory)
    # The modules and settings loaded so far live as long as the process, so the collector
    # need not scan them again.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    # One monitoring subscriber per fleet: only workers started with it on follow
    # status and telemetry, which do not use shared subscriptions.
    monitor = build_monitoring_subscriber(settings, factory) if settings.ingest_monitoring else None
    try:
        if monitor is not None:
            monitor.start()
        worker.run(stop)
    finally:
        if monitor is not None:
            monitor.stop()
    return EXIT_OK


def run_worker_until_signal() -> int:
    """Load the settings, run one worker, and return the exit status."""
    try:
        settings = load_settings()
    except SettingsError as error:
        logger.error("%s", error)
        return EXIT_FAILURE
    engine = create_db_engine(
        settings.resolved_database_url,
        echo=settings.database_echo,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    try:
        # A worker without its database would subscribe, log "ready" and fail every batch.
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        engine.dispose()
        detail = str(error.orig).splitlines()[0] if error.orig else str(error)
        logger.error(
            "cannot connect to the database: %s; check ZHIGUI_DATABASE_URL and that the "
            "database is up",
            detail,
        )
        return EXIT_FAILURE
    try:
        return run_worker(settings, engine)
    except ConnectionError as error:
        logger.error("%s", error)
        return EXIT_FAILURE
    finally:
        engine.dispose()
