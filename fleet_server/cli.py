"""Command-line entry point of the `fleet-server` program.

Exit status: 0 on success, 1 when the command fails (invalid settings, database error,
rejected input), 2 for usage errors and for commands that are not implemented yet.
"""

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from fleet_server.core.config import ServerSettings, SettingsError, load_settings
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope
from fleet_server.core.migrate import current_revision, head_revision, upgrade_to_head
from fleet_server.models import Operator, Role, School
from fleet_server.services.access import Actor
from fleet_server.services.errors import ServiceError
from fleet_server.services.seed import seed_reference_data
from fleet_server.services.users import create_user

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
# Exit status of usage errors (argparse's own) and of commands that are still stubs.
NOT_IMPLEMENTED_EXIT_CODE = 2
STUB_EPILOG = (
    f"Not implemented yet: `ingest` prints a message and exits with status "
    f"{NOT_IMPLEMENTED_EXIT_CODE}."
)


class CommandError(Exception):
    """A command failed for a reason the user can fix. The message explains the fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-server",
        description="Manage the fleet server that collects data from all cabinets.",
        epilog=STUB_EPILOG,
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
        "--port", type=int, help="TCP port to listen on (default: ZHIGUI_HTTP_PORT or 8000)"
    )

    commands.add_parser(
        "ingest",
        help="consume cabinet events from the MQTT broker into the database",
        description="Consume cabinet events from the MQTT broker and store them in the database.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the chosen command and return the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "ingest":
        return run_ingest()

    try:
        settings = load_settings(args.settings_file)
        if args.command == "serve":
            return run_serve(settings, host=args.host, port=args.port)
        if args.command == "migrate":
            return run_migrate(settings)
        if args.command == "seed":
            return run_seed(settings)
        if args.command == "create-user":
            return run_create_user(settings, args)
    except (SettingsError, CommandError) as error:
        print(f"fleet-server {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except ServiceError as error:
        print(f"fleet-server {args.command}: {error.message_en} ({error.code})", file=sys.stderr)
        return EXIT_FAILURE
    except SQLAlchemyError as error:
        print(f"fleet-server {args.command}: database error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    raise AssertionError(f"unhandled command {args.command!r}")


def run_ingest() -> int:
    # TODO: start the MQTT ingest worker here. It subscribes to the sales, events and status
    # topics under zhigui/v1/kiosks/+/ and runs as its own process beside `serve`. Several
    # workers share the sales topics through $share/ subscriptions.
    print(
        "fleet-server ingest: not implemented yet; cabinet events cannot be ingested "
        "in this version.",
        file=sys.stderr,
    )
    return NOT_IMPLEMENTED_EXIT_CODE


def run_migrate(settings: ServerSettings) -> int:
    upgrade_to_head(settings.resolved_database_url)
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

    engine = _open_migrated_database(settings)
    app = create_app(settings, engine=engine)
    try:
        uvicorn.run(app, host=host or settings.http_host, port=port or settings.http_port)
    finally:
        engine.dispose()
    return EXIT_OK


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


def _open_migrated_database(settings: ServerSettings) -> Engine:
    """Return an engine for the settings' database, or fail if it is not at the head revision."""
    engine = create_db_engine(
        settings.resolved_database_url,
        echo=settings.database_echo,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    revision = current_revision(engine)
    expected = head_revision()
    if revision != expected:
        engine.dispose()
        found = "no schema" if revision is None else f"revision {revision}"
        raise CommandError(
            f"the database has {found}, but this version needs revision {expected}: "
            "run `fleet-server migrate` first"
        )
    return engine


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
