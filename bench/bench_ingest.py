"""Ingest throughput and latency: simulated cabinets -> Mosquitto -> workers -> PostgreSQL.

Run from the repository root (needs Mosquitto and PostgreSQL installed, as for the tests):

    .venv/bin/python bench/bench_ingest.py --sales 40000 --workers 1 2

Starts a private Mosquitto and, unless --database-url is given, a private PostgreSQL on
loopback ports. For each worker count it creates a fresh schema with --cabinets cabinets,
starts that many `python -m fleet_server.ingest` processes in one shared-subscription
group, and lets --publishers processes publish --sales sales as fast as they can, spread
over the cabinets. Each publisher behaves like the agents' outboxes: it keeps a sale until
an Ack names it and sends it again after --resend-s seconds, then after twice that, and
so on. It prints committed sales per second (all sales over the time from the first
publish to the last Ack) and the publish -> Ack latency (which includes the commit) at
p50 and p99, and checks that the database holds every sale exactly once. With --paid,
every sale settles a purchase hold.
"""

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import make_url

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from conftest import find_free_port, find_postgres_bindir, private_postgres  # noqa: E402
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope  # noqa: E402
from fleet_server.models import (  # noqa: E402
    Base,
    Building,
    Cabinet,
    LocationType,
    Operator,
    Placement,
    Product,
    PurchaseSession,
    PurchaseState,
    Role,
    Sale,
    School,
    User,
    Wallet,
)
from fleet_server.models.base import utc_now  # noqa: E402
from fleet_server.services.campus_wallet import CampusWalletProvider, account_for_user  # noqa: E402
from fleet_server.services.seed import seed_reference_data  # noqa: E402
from kiosk_agent.contract import (  # noqa: E402
    Ack,
    Channel,
    SaleLine,
    SaleOutcome,
    SaleRecord,
    encode_payload,
    kiosk_topic,
    parse_payload,
)

READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 600.0
# A flat-out publisher reads PUBACKs and Acks after this many publishes.
LOOP_EVERY = 50
HOLD_FEN = 2_000


@contextlib.contextmanager
def private_mosquitto(workdir: Path) -> Iterator[tuple[str, int]]:
    """Run Mosquitto with queues large enough that a burst is not dropped by the broker."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = find_free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_inflight_messages 1000\n"
        "max_queued_messages 1000000\n"
        "log_dest none\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port)):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait()


def prepare_schema(
    server_url: str, cabinets: int, paid_sales: int
) -> tuple[str, list[str], list[uuid.UUID]]:
    """Create a schema with cabinets and paid sessions; return its URL, kiosk ids, sessions."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    database_url = url.render_as_string(hide_password=False)
    engine = create_db_engine(database_url)
    Base.metadata.create_all(engine)
    factory = create_session_factory(engine)
    kiosk_ids = [f"AH-10357-{number:04d}" for number in range(1, cabinets + 1)]
    sessions: list[uuid.UUID] = []
    with session_scope(factory) as session:
        seed_reference_data(session)
        school_id = session.scalar(sa.select(School.id).where(School.name == "安徽大学"))
        operator = Operator(name="基准测试运营企业")
        building = Building(
            school_id=school_id, name="基准楼", location_type=LocationType.DORMITORY
        )
        placement = Placement(building=building, description="基准点位")
        session.add_all([operator, building, placement])
        session.flush()
        for kiosk_id in kiosk_ids:
            session.add(Cabinet(kiosk_id=kiosk_id, placement=placement, operator_id=operator.id))
        session.flush()
        if paid_sales:
            cabinet_ids = [
                row.id for row in session.execute(sa.select(Cabinet.id).order_by(Cabinet.kiosk_id))
            ]
            students = []
            for index in range(100):
                student = User(
                    username=f"bench-student-{index}",
                    display_name="bench",
                    password_hash="x",
                    role=Role.STUDENT,
                    school_id=school_id,
                    is_active=True,
                )
                session.add(student)
                session.flush()
                session.add(Wallet(user_id=student.id, balance_fen=10**9, held_fen=0))
                students.append(student.id)
            session.flush()
            provider = CampusWalletProvider(session)
            for index in range(paid_sales):
                purchase_id = uuid.uuid4()
                student_id = students[index % len(students)]
                hold_id = provider.hold(
                    account_for_user(student_id), HOLD_FEN, f"purchase:{purchase_id}"
                )
                session.add(
                    PurchaseSession(
                        id=purchase_id,
                        user_id=student_id,
                        cabinet_id=cabinet_ids[index % len(cabinet_ids)],
                        door=0,
                        state=PurchaseState.EXPIRED,
                        hold_id=hold_id,
                        hold_amount_fen=HOLD_FEN,
                        deadline_at=utc_now() - timedelta(seconds=1),
                    )
                )
                sessions.append(purchase_id)
        product_id = session.scalar(sa.select(Product.id).order_by(Product.id).limit(1))
    engine.dispose()
    os.environ["BENCH_PRODUCT_ID"] = str(product_id)
    return database_url, kiosk_ids, sessions


def publisher_process(
    broker: tuple[str, int],
    kiosk_ids: list[str],
    sessions: list[str],
    sales: int,
    product_id: str,
    resend_s: float,
    rate: float | None,
    backlog: bool,
    results: "multiprocessing.Queue[tuple[float, float, list[float], int]]",
    published: "multiprocessing.Queue[float]",
    go: "multiprocessing.synchronize.Event",
) -> None:
    """Publish ``sales`` sales for the cabinets; report (first publish, last ack, latencies).

    With ``rate`` (sales per second), publishing is paced; otherwise it runs flat out.
    ``published`` receives the time the broker had accepted every sale. With ``backlog``
    the publisher leaves once the broker has them, without waiting for Acks, because the
    cabinets that would receive them are not on this machine and their work should not
    be timed against the workers'.
    """
    now = utc_now()
    records = []
    for index in range(sales):
        kiosk_id = kiosk_ids[index % len(kiosk_ids)]
        session_id = uuid.UUID(sessions[index]) if index < len(sessions) else uuid.uuid4()
        records.append(
            SaleRecord(
                sale_id=uuid.uuid4(),
                kiosk_id=kiosk_id,
                session_id=session_id,
                outcome=SaleOutcome.COMPLETED,
                opened_at=now,
                closed_at=now,
                recorded_at=now,
                lines=[
                    SaleLine(
                        product_id=product_id,
                        quantity=1 + index % 3,
                        unit_price_fen=350,
                        shelf=index % 4,
                    )
                ],
                planogram_version=1,
            )
        )
    payloads = {
        record.sale_id: (kiosk_topic(record.kiosk_id, Channel.SALES), encode_payload(record))
        for record in records
    }
    sent_at: dict[uuid.UUID, float] = {}
    latencies: list[float] = []
    last_ack = [0.0]
    subscribed = [False]

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        ack = parse_payload(Ack, message.payload)
        arrived = time.monotonic()
        for sale_id in ack.sale_ids:
            started = sent_at.pop(sale_id, None)
            if started is not None:
                latencies.append(arrived - started)
                payloads.pop(sale_id, None)
        if not payloads:
            last_ack[0] = arrived

    def on_subscribe(*args: object) -> None:
        subscribed[0] = True

    # This thread drives paho's loop itself. A network thread would cost a wake-up and a
    # switch of the interpreter lock per publish, and the publishers share the two cores
    # with the workers that they load.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    # No in-flight limit: with one, paho walks every unconfirmed message on each PUBACK.
    client.max_inflight_messages_set(0)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(*broker)
    ready_by = time.monotonic() + READY_TIMEOUT_S
    if not backlog:
        client.subscribe([(kiosk_topic(kiosk_id, Channel.ACKS), 1) for kiosk_id in kiosk_ids])
    while not (backlog or subscribed[0]) or not client.is_connected():
        if time.monotonic() > ready_by:
            raise RuntimeError("the broker did not accept the publisher in time")
        client.loop(0.05)
    go.wait()
    first = time.monotonic()
    handed_over = []
    for index, record in enumerate(records):
        if rate is not None:
            delay = first + index / rate - time.monotonic()
            while delay > 0:
                client.loop(delay)
                delay = first + index / rate - time.monotonic()
        elif index % LOOP_EVERY == 0:
            client.loop(0)
        topic, payload = payloads[record.sale_id]
        sent_at[record.sale_id] = time.monotonic()
        handed_over.append(client.publish(topic, payload, qos=1))
    deadline = first + RUN_TIMEOUT_S
    while not all(info.is_published() for info in handed_over):
        if time.monotonic() > deadline:
            raise RuntimeError("the broker did not confirm every sale in time")
        client.loop(0.05)
    published.put(time.monotonic())
    if backlog:
        client.disconnect()
        results.put((first, 0.0, [], 0))
        return
    resend_at = time.monotonic() + resend_s
    wait_s = resend_s
    while payloads and time.monotonic() < deadline:
        client.loop(0.05)
        if payloads and time.monotonic() >= resend_at:
            # Like the agents' outboxes: resend what is unacknowledged, backing off each time.
            wait_s *= 2
            resend_at = time.monotonic() + wait_s
            for topic, payload in list(payloads.values()):
                client.publish(topic, payload, qos=1)
    client.disconnect()
    results.put((first, last_ack[0], latencies, len(payloads)))


def wait_for_sales(database_url: str, expected: int) -> float:
    """Poll the database until it contains ``expected`` sales; return the time it did.

    Counting the rows every 50 ms took a tenth of a core from the server under test, so
    each poll first reads the highest id, from the primary key's index. The schema is
    new, so there cannot be ``expected`` sales before that id reaches ``expected``.
    """
    engine = create_db_engine(database_url)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        with engine.connect() as connection:
            while time.monotonic() < deadline:
                highest = connection.scalar(sa.select(sa.func.max(Sale.id))) or 0
                stored = 0
                if highest >= expected:
                    stored = connection.scalar(sa.select(sa.func.count()).select_from(Sale)) or 0
                connection.rollback()
                if stored >= expected:
                    return time.monotonic()
                time.sleep(0.05)
    finally:
        engine.dispose()
    raise RuntimeError(f"only part of {expected} sales stored within {RUN_TIMEOUT_S:.0f} s")


def run(
    broker: tuple[str, int], server_url: str, args: argparse.Namespace, workers: int
) -> dict[str, float]:
    paid = args.sales if args.paid else 0
    database_url, kiosk_ids, sessions = prepare_schema(server_url, args.cabinets, paid)
    env = {
        **os.environ,
        "ZHIGUI_DATABASE_URL": database_url,
        "ZHIGUI_MQTT_HOST": broker[0],
        "ZHIGUI_MQTT_PORT": str(broker[1]),
        "ZHIGUI_INGEST_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
        "ZHIGUI_INGEST_BATCH_SIZE": str(args.batch_size),
        "ZHIGUI_INGEST_BATCH_LATENCY_MS": str(args.batch_latency_ms),
    }
    # Deleted after a run that succeeds, kept for reading after one that fails.
    logs = tempfile.mkdtemp(prefix="bench-ingest-")
    succeeded = False
    processes = []
    for index in range(workers):
        log = open(Path(logs) / f"worker-{index}.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "fleet_server.ingest"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(
            "ready" in (Path(logs) / f"worker-{i}.log").read_text() for i in range(workers)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready; logs in {logs}")
            time.sleep(0.05)
        results: multiprocessing.Queue[tuple[float, float, list[float], int]] = (
            multiprocessing.Queue()
        )
        go = multiprocessing.Event()
        published: multiprocessing.Queue[float] = multiprocessing.Queue()
        share = args.sales // args.publishers
        rate = args.rate / args.publishers if args.rate else None
        publishers = []
        for index in range(args.publishers):
            own_kiosks = kiosk_ids[index :: args.publishers]
            own_sessions = [str(s) for s in sessions[index * share : (index + 1) * share]]
            process = multiprocessing.Process(
                target=publisher_process,
                args=(
                    broker,
                    own_kiosks,
                    own_sessions,
                    share,
                    os.environ["BENCH_PRODUCT_ID"],
                    args.resend_s,
                    rate,
                    args.backlog,
                    results,
                    published,
                    go,
                ),
            )
            process.start()
            publishers.append(process)
        resumed = committed = 0.0
        time.sleep(2.0)  # let every publisher build its sales and subscribe
        if args.backlog:
            # The workers sleep while the cabinets publish, so the broker queues every
            # sale; timing starts when they wake to the backlog.
            for process in processes:
                process.send_signal(signal.SIGSTOP)
        go.set()
        if args.backlog:
            for _ in publishers:
                published.get(timeout=RUN_TIMEOUT_S)
            time.sleep(1.0)  # the broker has queued the last sales
            resumed = time.monotonic()
            for process in processes:
                process.send_signal(signal.SIGCONT)
            committed = wait_for_sales(database_url, share * len(publishers))
        outcomes = [results.get(timeout=RUN_TIMEOUT_S) for _ in publishers]
        for process in publishers:
            process.join()
        succeeded = True
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        if succeeded:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print(f"the workers' logs are in {logs}", file=sys.stderr)
    first = resumed if args.backlog else min(outcome[0] for outcome in outcomes)
    last = committed if args.backlog else max(outcome[1] for outcome in outcomes)
    latencies = sorted(value for outcome in outcomes for value in outcome[2])
    unacked = sum(outcome[3] for outcome in outcomes)
    engine = create_db_engine(database_url)
    with engine.connect() as connection:
        stored = connection.scalar(sa.select(sa.func.count()).select_from(Sale))
        distinct = connection.scalar(sa.select(sa.func.count(sa.distinct(Sale.sale_id))))
    engine.dispose()
    total = share * args.publishers
    return {
        "workers": workers,
        "sales": total,
        "stored": stored or 0,
        "distinct": distinct or 0,
        "unacked": unacked,
        "seconds": last - first,
        "rate": total / (last - first),
        "p50_ms": statistics.quantiles(latencies, n=100)[49] * 1000 if latencies else math.nan,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000 if latencies else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=40_000, help="sales per run")
    parser.add_argument("--cabinets", type=int, default=100, help="simulated cabinets")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run"
    )
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--batch-latency-ms", type=int, default=50)
    parser.add_argument(
        "--resend-s", type=float, default=5.0, help="seconds before a sale is resent"
    )
    parser.add_argument("--paid", action="store_true", help="every sale settles a payment hold")
    parser.add_argument(
        "--rate", type=float, help="publish at this many sales per second in total (paced)"
    )
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="publish everything while the workers are stopped, then time the drain",
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: a private one)")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        broker = stack.enter_context(private_mosquitto(workdir))
        server_url = args.database_url
        if server_url is None:
            bindir = find_postgres_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL is not installed; pass --database-url")
            server_url = stack.enter_context(private_postgres(bindir))
        print(
            "| workers | sales | stored once | unacked | seconds | committed sales/s "
            "| p50 ms | p99 ms |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for workers in args.workers:
            result = run(broker, server_url, args, workers)
            once = "yes" if result["stored"] == result["distinct"] == result["sales"] else "NO"
            # The backlog run does not wait for Acks, so it has no latency or unacked count.
            unacked = "-" if args.backlog else result["unacked"]
            print(
                f"| {workers} | {result['sales']:,} | {once} | {unacked} | "
                f"{result['seconds']:.1f} | {result['rate']:,.0f} | {result['p50_ms']:,.0f} | "
                f"{result['p99_ms']:,.0f} |".replace("nan", "-"),
                flush=True,
            )


if __name__ == "__main__":
    main()
