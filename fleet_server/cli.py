"""Command-line entry point of the `fleet-server` program.

Exit status: 0 on success, 1 when the command fails (invalid settings, database error,
rejected input), 2 for usage errors. A failure the user can fix prints one line,
``fleet-server COMMAND: error: MESSAGE``, and no traceback.
"""

import argparse
import getpass
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from fleet_server.core.config import ServerSettings, SettingsError, load_settings
from fleet_server.core.db import (
    DatabaseUrlError,
    create_db_engine,
    create_session_factory,
    session_scope,
)
from fleet_server.core.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from fleet_server.ingest.worker import IngestWorker
from fleet_server.messaging.publisher import MqttPublisher, PublishError
from fleet_server.models import Cabinet, Operator, Role, School
from fleet_server.monitoring.subscriber import MonitoringSubscriber
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.services.provisioning import (
    broker_files,
    provision_cabinet,
    write_broker_files,
)
from fleet_server.services.seed import seed_reference_data
from fleet_server.services.users import create_user

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
# The migration that adds cabinet credentials; `provision` and `broker-config` need it.
OPERATIONS_REVISION = "0002_operations"
BROKER_HINT = (
    "check ZHIGUI_MQTT_HOST, ZHIGUI_MQTT_PORT and the server's broker account, and that the "
    "broker is running"
)


class CommandError(Exception):
    """A command failed for a reason the user can fix. The message explains the fix."""


def tcp_port(text: str) -> int:
    """Parse a TCP port number for argparse, which reports a ValueError as a usage error."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text}: use a number from 1 to 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-server",
        description="Manage the fleet server that collects data from all cabinets.",
    )
    parser.add_argument(
        "--settings-file",
        type=Path,
        metavar="FILE",
        help="dotenv file with ZHIGUI_* settings, below environment variables in precedence "
        "(default: $ZHIGUI_SETTINGS_FILE, else none)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="minimum level of log messages written to stderr (default: INFO)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API server",
        description="Run the HTTP API server for cabinets and operators with uvicorn. "
        "The database must be migrated to the latest revision first.",
    )
    serve.add_argument("--host", help="address to bind (default: ZHIGUI_HTTP_HOST or 127.0.0.1)")
    serve.add_argument(
        "--port", type=tcp_port, help="TCP port to listen on (default: ZHIGUI_HTTP_PORT or 8000)"
    )

    commands.add_parser(
        "ingest",
        help="store cabinet sales and events from the MQTT broker, and settle purchases",
        description="Run one ingest worker until SIGTERM or SIGINT: subscribe to every "
        "cabinet's sales and events through the shared subscription group "
        "ZHIGUI_INGEST_GROUP on the broker ZHIGUI_MQTT_HOST:ZHIGUI_MQTT_PORT, commit them in "
        "batches of ZHIGUI_INGEST_BATCH_SIZE messages or ZHIGUI_INGEST_BATCH_LATENCY_MS ms, "
        "settle the purchases they finish and acknowledge them to the cabinets. Start "
        "several workers with the same group to share the load.",
    )
    commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Upgrade the database schema to the latest Alembic revision. "
        "In an empty database this creates all tables.",
    )
    commands.add_parser(
        "seed",
        help="load the reference data (counties, schools, sample products)",
        description="Insert the poverty counties, schools and sample products shipped with "
        "the server. Rows that exist already are left unchanged, so running it again "
        "changes nothing.",
    )

    create = commands.add_parser(
        "create-user",
        help="create a user account, e.g. the first province administrator",
        description="Create an account. The password is read twice from the terminal, or "
        "once from standard input with --password-stdin.",
    )
    create.add_argument("--username", required=True, help="sign-in name")
    create.add_argument(
        "--role", required=True, choices=[role.value for role in Role], help="account role"
    )
    create.add_argument("--display-name", help="name shown in the web pages (default: username)")
    school = create.add_mutually_exclusive_group()
    school.add_argument("--school-id", type=int, help="school of a school_admin or student")
    school.add_argument("--school", metavar="NAME", help="school by its full Chinese name")
    operator = create.add_mutually_exclusive_group()
    operator.add_argument("--operator-id", type=int, help="company of an operator account")
    operator.add_argument("--operator", metavar="NAME", help="company by its registered name")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )

    provision = commands.add_parser(
        "provision",
        help="issue a cabinet's broker credentials and key, and write its files",
        description="Issue a registered cabinet's broker password and HMAC key and write "
        "KIOSK_ID.agent.toml (the agent's config, mode 0600), KIOSK_ID.sticker.svg, "
        "KIOSK_ID.passwd (password-file line) and KIOSK_ID.acl (ACL section) to the "
        "output directory. The password is not stored and cannot be shown again.",
    )
    provision.add_argument("kiosk_id", metavar="KIOSK_ID", help="the registered cabinet's id")
    provision.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the files"
    )
    provision.add_argument(
        "--rotate",
        action="store_true",
        help="replace the credentials of a cabinet that was provisioned before",
    )

    broker = commands.add_parser(
        "broker-config",
        help="write the Mosquitto password and ACL files for every provisioned cabinet",
        description="Write passwd (Mosquitto password file), acl (ACL file) and zhigui.conf "
        "(settings to include from mosquitto.conf) to the output directory. They cover "
        "every provisioned cabinet that is not retired, and the server's own account "
        "ZHIGUI_MQTT_USERNAME with the password ZHIGUI_MQTT_PASSWORD.",
    )
    broker.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the files"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the chosen command and return the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return run_command(args)
    except Exception as error:
        message = describe_error(error)
        if message is None:
            raise
        print(f"fleet-server {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE


def run_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings_file)
    if args.command == "serve":
        return run_serve(settings, host=args.host, port=args.port)
    if args.command == "ingest":
        return run_ingest(settings)
    if args.command == "migrate":
        return run_migrate(settings)
    if args.command == "seed":
        return run_seed(settings)
    if args.command == "create-user":
        return run_create_user(settings, args)
    if args.command == "provision":
        return run_provision(settings, kiosk_id=args.kiosk_id, out=args.out, rotate=args.rotate)
    if args.command == "broker-config":
        return run_broker_config(settings, out=args.out)
    raise AssertionError(f"unhandled command {args.command!r}")


def describe_error(error: Exception) -> str | None:
    """Return the one-line message for an error the user can fix, or None for a bug."""
    if isinstance(error, SettingsError | CommandError | DatabaseUrlError):
        return str(error)
    if isinstance(error, ServiceError):
        return f"{error.message_en} ({error.code})"
    if isinstance(error, SQLAlchemyError):
        # The driver's message comes first; SQLAlchemy appends the SQL and a link to it.
        cause = error.orig if isinstance(error, DBAPIError) else error
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return f"database error: {detail}; check ZHIGUI_DATABASE_URL and that the database is up"
    if isinstance(error, ConnectionError):
        return f"{error}; {BROKER_HINT}"
    if isinstance(error, OSError):
        target = f" {error.filename}" if error.filename else ""
        return f"cannot access{target}: {error.strerror or error}"
    return None


def run_ingest(settings: ServerSettings) -> int:
    from fleet_server.ingest.runner import run_worker

    # Ingest writes sales, the procurement ledger, stock and alerts: the whole schema.
    engine = _open_migrated_database(settings)
    try:
        return run_worker(settings, engine)
    finally:
        engine.dispose()


def run_migrate(settings: ServerSettings) -> int:
    try:
        upgrade_to_head(settings.resolved_database_url)
    except (AlembicCommandError, RevisionError) as error:
        raise CommandError(
            f"cannot upgrade the database: {error}; a revision that this version does not "
            "know means a newer fleet-server migrated the database, so run that version"
        ) from error
    print(f"database is at revision {head_revision()}")
    return EXIT_OK


def run_seed(settings: ServerSettings) -> int:
    engine = _open_migrated_database(settings)
    try:
        with session_scope(create_session_factory(engine)) as session:
            report = seed_reference_data(session)
    finally:
        engine.dispose()
    inserted = ", ".join(f"{table} {count}" for table, count in asdict(report).items())
    print(f"rows inserted: {inserted}")
    return EXIT_OK


def run_serve(settings: ServerSettings, *, host: str | None, port: int | None) -> int:
    import uvicorn

    from fleet_server.app import create_app

    host = host or settings.http_host
    port = port or settings.http_port
    _check_can_listen(host, port)
    engine = _open_migrated_database(settings)
    publisher, worker, monitor = _start_broker_clients(settings, engine)
    app = create_app(settings, engine=engine, command_publisher=publisher)
    try:
        uvicorn.run(app, host=host, port=port)
    finally:
        if monitor is not None:
            monitor.stop()
        if worker is not None:
            worker.stop()
        if publisher is not None:
            publisher.stop()
        engine.dispose()
    return EXIT_OK


def _check_can_listen(host: str, port: int) -> None:
    """Raise CommandError when uvicorn could not bind host:port, before anything starts.

    Uvicorn would log the bind error and exit with status 3 after the broker clients and
    the app had started.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CommandError(
            f"cannot listen on {host}: {error.strerror}; give an IP address or a known host "
            "name with --host or ZHIGUI_HTTP_HOST"
        ) from error
    family, kind, protocol, _name, address = addresses[0]
    try:
        with socket.socket(family, kind, protocol) as probe:
            # Uvicorn sets SO_REUSEADDR too, so a port in TIME_WAIT passes here as there.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise CommandError(
            f"cannot listen on {host}:{port}: {error.strerror}; stop the program that uses "
            "the port or choose another with --port or ZHIGUI_HTTP_PORT"
        ) from error


def _start_broker_clients(
    settings: ServerSettings, engine: Engine
) -> tuple[MqttPublisher | None, IngestWorker | None, MonitoringSubscriber | None]:
    """Connect the command publisher, one ingest worker and the monitoring subscriber.

    They start only when ZHIGUI_MQTT_HOST is set.

    Without a broker the API still runs, and purchases fail with cabinet_unreachable.
    """
    from fleet_server.ingest.runner import (
        broker_address,
        build_ingest_worker,
        build_monitoring_subscriber,
    )

    if not settings.broker_configured:
        logger.warning("ZHIGUI_MQTT_HOST is not set: no commands are sent and nothing ingested")
        return None, None, None
    publisher = MqttPublisher(broker_address(settings))
    factory = create_session_factory(engine)
    worker = build_ingest_worker(settings, factory)
    monitor = build_monitoring_subscriber(settings, factory, publisher)
    try:
        publisher.start()
        worker.start()
        monitor.start()
    except (PublishError, ConnectionError) as error:
        publisher.stop()
        raise CommandError(f"{error}; {BROKER_HINT}") from error
    return publisher, worker, monitor


def run_create_user(settings: ServerSettings, args: argparse.Namespace) -> int:
    password = _read_new_password(from_stdin=args.password_stdin)
    engine = _open_migrated_database(settings)
    try:
        with session_scope(create_session_factory(engine)) as session:
            school_id = args.school_id
            if args.school is not None:
                school_id = session.scalar(select(School.id).where(School.name == args.school))
                if school_id is None:
                    raise CommandError(
                        f"school {args.school!r} not found: give the full name as seeded, "
                        "or run `fleet-server seed` first"
                    )
            operator_id = args.operator_id
            if args.operator is not None:
                operator_id = session.scalar(
                    select(Operator.id).where(Operator.name == args.operator)
                )
                if operator_id is None:
                    raise CommandError(f"operator {args.operator!r} not found")
            user = create_user(
                session,
                actor=Actor.system("cli"),
                username=args.username,
                password=password,
                display_name=args.display_name or args.username,
                role=Role(args.role),
                school_id=school_id,
                operator_id=operator_id,
            )
            user_id = user.id
    finally:
        engine.dispose()
    print(f"created user {args.username!r} (id {user_id}, role {args.role})")
    return EXIT_OK


def run_provision(settings: ServerSettings, *, kiosk_id: str, out: Path, rotate: bool) -> int:
    engine = _open_database_with(settings, OPERATIONS_REVISION)
    try:
        with session_scope(create_session_factory(engine)) as session:
            provisioned = session.scalar(
                select(Cabinet.credentials_issued_at).where(Cabinet.kiosk_id == kiosk_id)
            )
            if provisioned is not None and not rotate:
                raise CommandError(
                    f"cabinet {kiosk_id} was provisioned at {provisioned.isoformat()}; pass "
                    "--rotate to replace its credentials (its agent needs the new config file)"
                )
            bundle = provision_cabinet(
                session, actor=Actor.system("cli"), kiosk_id=kiosk_id, settings=settings
            )
            out.mkdir(parents=True, exist_ok=True)
            config_path = out / f"{kiosk_id}.agent.toml"
            # Created 0600 before the secret is written, so it is never readable by others.
            config_path.touch(mode=0o600, exist_ok=True)
            config_path.chmod(0o600)
            config_path.write_text(bundle.agent_config_toml, encoding="utf-8")
            files = {
                out / f"{kiosk_id}.sticker.svg": bundle.sticker_svg,
                out / f"{kiosk_id}.passwd": bundle.password_file_line + "\n",
                out / f"{kiosk_id}.acl": bundle.acl_entries,
            }
            for path, text in files.items():
                path.write_text(text, encoding="utf-8")
    finally:
        engine.dispose()
    print(f"provisioned {kiosk_id}: broker username {bundle.broker_username}")
    for path in [config_path, *files]:
        print(f"  wrote {path}")
    print("run `fleet-server broker-config` again so the broker accepts the new password")
    return EXIT_OK


def run_broker_config(settings: ServerSettings, *, out: Path) -> int:
    if settings.mqtt_password is None:
        raise CommandError(
            "ZHIGUI_MQTT_PASSWORD is not set: the password file must contain the server's "
            f"own account {settings.mqtt_username!r}"
        )
    engine = _open_database_with(settings, OPERATIONS_REVISION)
    try:
        with session_scope(create_session_factory(engine)) as session:
            try:
                files = broker_files(
                    session,
                    service_username=settings.mqtt_username,
                    service_password=settings.mqtt_password.get_secret_value(),
                )
            except ValueError as error:
                raise CommandError(str(error)) from error
    finally:
        engine.dispose()
    paths = write_broker_files(files, out)
    print(f"broker files for {files.cabinet_count} cabinets and {settings.mqtt_username!r}:")
    for path in paths:
        print(f"  wrote {path}")
    return EXIT_OK


def _open_database_with(settings: ServerSettings, revision: str) -> Engine:
    """Return an engine for a database whose schema includes ``revision``, or fail.

    Unlike ``_open_migrated_database`` this accepts any later revision, including one on
    another branch that was merged, because these commands need only their own tables.
    """
    engine = create_db_engine(
        settings.resolved_database_url,
        echo=settings.database_echo,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    for head in heads:
        try:
            steps = list(script.iterate_revisions(head, "base"))
        except RevisionError as error:
            engine.dispose()
            raise CommandError(_unknown_revision_message(head)) from error
        if any(step.revision == revision for step in steps):
            return engine
    engine.dispose()
    found = ", ".join(heads) if heads else "no schema"
    raise CommandError(
        f"the database has {found}, but this command needs revision {revision}: "
        "run `fleet-server migrate` first"
    )


def _open_migrated_database(settings: ServerSettings) -> Engine:
    """Return an engine for the settings' database, or fail if it is not at the head revision."""
    engine = create_db_engine(
        settings.resolved_database_url,
        echo=settings.database_echo,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    revision = current_revision(engine)
    expected = head_revision()
    if revision is not None and revision != expected and not _is_known_revision(revision):
        engine.dispose()
        raise CommandError(_unknown_revision_message(revision))
    if revision != expected:
        engine.dispose()
        found = "no schema" if revision is None else f"revision {revision}"
        raise CommandError(
            f"the database has {found}, but this version needs revision {expected}: "
            "run `fleet-server migrate` first"
        )
    return engine


def _is_known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except (AlembicCommandError, RevisionError):
        return False


def _unknown_revision_message(revision: str) -> str:
    return (
        f"the database is at revision {revision}, which this version of fleet-server does "
        "not know: a newer version migrated it, so run that version"
    )


def _read_new_password(*, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CommandError(
            "standard input is not a terminal: pass --password-stdin to read the password from it"
        )
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise CommandError("the two passwords differ")
    return password
