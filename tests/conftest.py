"""Session fixtures that give tests a real MQTT broker and a real PostgreSQL database.

Each fixture chooses its server in this order:

1. the server named by an environment variable (ZHIGUI_TEST_MQTT_URL or
   ZHIGUI_TEST_DATABASE_URL), which must accept a connection;
2. a private server started from the installed binaries on a free loopback port,
   with its files in a temporary directory, stopped when the session ends;
3. none: the tests that use the fixture are skipped with the reason, or fail
   when the environment variable CI is "true".

Only loopback hosts are accepted, so the tests never send traffic to another machine.
"""

import contextlib
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

MQTT_URL_ENV = "ZHIGUI_TEST_MQTT_URL"
DATABASE_URL_ENV = "ZHIGUI_TEST_DATABASE_URL"
MQTT_DEFAULT_PORT = 1883
CONNECT_TIMEOUT_S = 5.0
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
LOOPBACK_HOST = "127.0.0.1"

PRIVATE_DATABASE_USER = "zhigui"
PRIVATE_DATABASE_NAME = "zhigui_test"


# --- Shared helpers -------------------------------------------------------------------------


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the requesting tests, or fail them under CI=true, where every service must exist."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true, so a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    # NOTE: another process can take the port between this check and the server's bind.
    # The server then fails to start and the fixture fails with the server's log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until a server process accepts TCP connections, or fail with its log."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"server {process.args!r} exited with status {process.returncode} before "
                f"accepting connections on {host}:{port}; its log:\n{read_log(log_path)}",
                pytrace=False,
            )
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(
        f"server {process.args!r} did not accept connections on {host}:{port} within "
        f"{SERVER_START_TIMEOUT_S:.0f} s; its log:\n{read_log(log_path)}",
        pytrace=False,
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_checked(command: list[str], step: str, cwd: Path) -> None:
    """Run a setup command and fail the fixture with its output if it exits non-zero."""
    result = subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace")
        pytest.fail(
            f"{step} failed with exit status {result.returncode}: {command!r}\n{output}",
            pytrace=False,
        )


# --- MQTT broker ----------------------------------------------------------------------------


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """Return (host, port) of an mqtt://HOST[:PORT] URL, failing on anything else."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        pytest.fail(
            f"{MQTT_URL_ENV}={url!r} is invalid: expected mqtt://HOST[:PORT], "
            "for example mqtt://127.0.0.1:1883",
            pytrace=False,
        )
    if not is_loopback_host(parts.hostname):
        pytest.fail(
            f"{MQTT_URL_ENV}={url!r} is rejected: tests only connect to loopback hosts "
            "(127.0.0.1, ::1 or localhost)",
            pytrace=False,
        )
    try:
        port = parts.port or MQTT_DEFAULT_PORT
    except ValueError as error:
        pytest.fail(f"{MQTT_URL_ENV}={url!r} has an invalid port: {error}", pytrace=False)
    return parts.hostname, port


def find_mosquitto() -> str | None:
    on_path = shutil.which("mosquitto")
    if on_path is not None:
        return on_path
    debian_path = Path("/usr/sbin/mosquitto")
    if os.access(debian_path, os.X_OK):
        return str(debian_path)
    return None


@contextlib.contextmanager
def private_mosquitto(binary: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """Run a Mosquitto broker on a free loopback port until the context exits."""
    port = find_free_port()
    config_path = workdir / "mosquitto.conf"
    config_path.write_text(
        f"listener {port} {LOOPBACK_HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "log_dest stderr\n"
    )
    # Mosquitto (2.0.11 checked) reads its configuration before it drops root privileges to the
    # "mosquitto" user, and this configuration makes it write no files afterwards.
    log_path = workdir / "mosquitto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(LOOPBACK_HOST, port, process, log_path)
        yield LOOPBACK_HOST, port
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(host, port) of an MQTT broker that accepts anonymous clients."""
    url = os.environ.get(MQTT_URL_ENV)
    if url:
        host, port = parse_mqtt_url(url)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as error:
            pytest.fail(
                f"cannot connect to the MQTT broker {MQTT_URL_ENV}={url!r}: {error}; "
                "start the broker or unset the variable",
                pytrace=False,
            )
        yield host, port
        return

    binary = find_mosquitto()
    if binary is None:
        skip_or_fail(f"Mosquitto not installed: apt-get install mosquitto, or set {MQTT_URL_ENV}")
    with private_mosquitto(binary, tmp_path_factory.mktemp("mosquitto")) as address:
        yield address


# --- PostgreSQL -----------------------------------------------------------------------------


def find_postgres_bindir() -> Path | None:
    """Return the directory that contains initdb, pg_ctl and postgres, preferring PATH."""
    needed = ("initdb", "pg_ctl", "postgres")
    initdb = shutil.which("initdb")
    if initdb is not None:
        bindir = Path(initdb).parent
        if all(os.access(bindir / name, os.X_OK) for name in needed):
            return bindir

    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/VERSION/bin.
    candidates = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if path.parent.parent.name.isdigit()
        and all(os.access(path.parent / name, os.X_OK) for name in needed)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda bindir: int(bindir.parent.name))


def check_database_connects(url: str) -> None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": int(CONNECT_TIMEOUT_S)})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        shown_url = make_url(url).render_as_string(hide_password=True)
        pytest.fail(
            f"cannot connect to the database {DATABASE_URL_ENV}={shown_url!r}: {error}; "
            "start PostgreSQL, create the role and database, or unset the variable",
            pytrace=False,
        )
    finally:
        engine.dispose()


def postgres_command_prefix() -> list[str]:
    """Return the prefix that runs a PostgreSQL server command as a non-root user.

    PostgreSQL does not start as root, so under root the commands run as the
    "postgres" OS user that Debian's packages create.
    """
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        skip_or_fail(
            "PostgreSQL cannot run as root and no 'postgres' OS user exists: "
            f"apt-get install postgresql, or set {DATABASE_URL_ENV}"
        )
    # /usr/sbin is often missing from PATH, so look there too.
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        skip_or_fail(
            "PostgreSQL cannot run as root and runuser was not found: "
            f"apt-get install util-linux, or set {DATABASE_URL_ENV}"
        )
    return [runuser, "-u", "postgres", "--"]


def make_workdir_for_postgres() -> Path:
    """Create a temporary directory that the user running PostgreSQL owns."""
    # mkdtemp under the system temporary directory, not under pytest's per-user
    # directory, because the "postgres" user cannot enter root's 0700 directories.
    workdir = Path(tempfile.mkdtemp(prefix="zhigui-postgres-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    return workdir


def create_database(server_url: URL, name: str) -> None:
    engine = sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


@contextlib.contextmanager
def private_postgres(bindir: Path) -> Iterator[str]:
    """Run a throwaway PostgreSQL server on a free loopback port until the context exits."""
    prefix = postgres_command_prefix()
    workdir = make_workdir_for_postgres()
    datadir = workdir / "data"
    log_path = workdir / "postgres.log"
    try:
        # Trust authentication lets any local user connect without a password. That is
        # acceptable for a throwaway database that listens on 127.0.0.1 only.
        run_checked(
            [
                *prefix,
                str(bindir / "initdb"),
                "--pgdata",
                str(datadir),
                "--username",
                PRIVATE_DATABASE_USER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
            ],
            "initdb",
            cwd=workdir,
        )
        port = find_free_port()
        # fsync=off because the data is thrown away when the session ends.
        server_options = (
            f"-p {port} -c listen_addresses={LOOPBACK_HOST} "
            f"-c unix_socket_directories='{workdir}' -c fsync=off"
        )
        start_command = [
            *prefix,
            str(bindir / "pg_ctl"),
            "--pgdata",
            str(datadir),
            "--log",
            str(log_path),
            "--options",
            server_options,
            "--wait",
            "--timeout",
            str(int(SERVER_START_TIMEOUT_S)),
            "start",
        ]
        result = subprocess.run(
            start_command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"pg_ctl start failed with exit status {result.returncode}: "
                f"{result.stdout.decode(errors='replace')}\nserver log:\n{read_log(log_path)}",
                pytrace=False,
            )
        try:
            server_url = URL.create(
                "postgresql+psycopg",
                username=PRIVATE_DATABASE_USER,
                host=LOOPBACK_HOST,
                port=port,
                database=PRIVATE_DATABASE_NAME,
            )
            create_database(server_url, PRIVATE_DATABASE_NAME)
            yield server_url.render_as_string(hide_password=False)
        finally:
            subprocess.run(
                [
                    *prefix,
                    str(bindir / "pg_ctl"),
                    "--pgdata",
                    str(datadir),
                    "--mode",
                    "fast",
                    "--wait",
                    "stop",
                ],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (postgresql+psycopg://...) of an empty PostgreSQL database."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        try:
            host = make_url(url).host
        except sa.exc.ArgumentError as error:
            pytest.fail(f"{DATABASE_URL_ENV} is not a valid SQLAlchemy URL: {error}", pytrace=False)
        # No host means a Unix socket on this machine, which is also local.
        if host is not None and not is_loopback_host(host):
            pytest.fail(
                f"{DATABASE_URL_ENV} host {host!r} is rejected: tests only connect to "
                "loopback hosts (127.0.0.1, ::1 or localhost)",
                pytrace=False,
            )
        check_database_connects(url)
        yield url
        return

    bindir = find_postgres_bindir()
    if bindir is None:
        skip_or_fail(
            f"PostgreSQL not installed: apt-get install postgresql, or set {DATABASE_URL_ENV}"
        )
    with private_postgres(bindir) as private_url:
        yield private_url
