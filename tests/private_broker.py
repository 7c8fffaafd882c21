"""A Mosquitto broker on a fixed loopback port that a test can stop and start again."""

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
WAIT_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.02


# Where the kernel's ephemeral ports begin when /proc does not say (Linux's default).
DEFAULT_EPHEMERAL_LOW = 32768
# Fixed ports are drawn from here up to the first ephemeral port.
FIXED_PORT_LOW = 10000


def fixed_port() -> int:
    """Return a free loopback port below the kernel's ephemeral range.

    The broker keeps its port across a restart. A port from the ephemeral range can be
    taken while the broker is down: by any outgoing connection, or by a client that
    reconnects to it and, with the port free, connects to itself (TCP simultaneous open).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = DEFAULT_EPHEMERAL_LOW
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(FIXED_PORT_LOW, max(low, FIXED_PORT_LOW + 1))
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in {FIXED_PORT_LOW}..{low - 1} after 100 tries")


class PrivateBroker:
    """A Mosquitto process on a fixed loopback port, with persistence, that can be restarted."""

    def __init__(self, binary: str, workdir: Path, *, allow_anonymous: bool = True) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = fixed_port()
        self.config = workdir / "mosquitto.conf"
        # Persistence keeps the fake server's subscription across the restart, so messages
        # that arrive before it reconnects wait for it.
        self.config.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "log_dest stderr\n"
        )
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"mosquitto exited: {self.log.read_text()}"
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 1):
                return
            assert time.monotonic() < deadline, f"mosquitto did not start: {self.log.read_text()}"
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(WAIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def run_private_broker(*, allow_anonymous: bool = True) -> Iterator[PrivateBroker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(binary, os.X_OK):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Mosquitto not installed (CI=true, so a missing service fails the run)")
        pytest.skip("Mosquitto not installed: apt-get install mosquitto")
    # Mosquitto started as root drops to the "mosquitto" user before it writes its
    # persistence file, so that user must own the directory.
    workdir = Path(tempfile.mkdtemp(prefix="zhigui-mosquitto-"))
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("mosquitto")
            os.chown(workdir, owner.pw_uid, owner.pw_gid)
    broker = PrivateBroker(binary, workdir, allow_anonymous=allow_anonymous)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
