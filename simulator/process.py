"""Run ``kiosk-sim cabinet`` as a child process, for tests and demos in other processes.

``CabinetProcess`` starts the command, reads the JSON line it prints first (tty
path, control socket, ...), and stops it with SIGTERM. The child's log goes to a
temporary file, so a failing test can show it.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

DEFAULT_STARTUP_TIMEOUT_S = 15.0
DEFAULT_STOP_TIMEOUT_S = 10.0


class CabinetProcessError(Exception):
    """The child did not start, or did not announce its tty in time."""


class CabinetProcess:
    """A ``python -m simulator.cli cabinet ARGS`` child process; see the module docstring."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        python: str = sys.executable,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    ) -> None:
        self.command = [python, "-m", "simulator.cli", "cabinet", *args]
        self.startup_timeout_s = startup_timeout_s
        self.info: dict[str, Any] = {}
        log_fd, log_name = tempfile.mkstemp(prefix="kiosk-sim-", suffix=".log")
        os.close(log_fd)
        self.log_path = Path(log_name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def tty(self) -> str:
        return str(self.info["tty"])

    @property
    def control(self) -> str:
        return str(self.info["control"])

    @property
    def baud(self) -> int:
        return int(self.info["baud"])

    @property
    def process(self) -> "subprocess.Popen[bytes]":
        if self._process is None:
            raise CabinetProcessError("the cabinet process has not been started")
        return self._process

    def log(self) -> str:
        """Return the child's stderr so far."""
        return self.log_path.read_text(errors="replace")

    def start(self) -> dict[str, Any]:
        """Start the child and return its announcement; raises ``CabinetProcessError``.

        On failure the error message contains the child's log, and the log file is removed.
        """
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        try:
            line = self._read_first_line()
            try:
                self.info = json.loads(line)
            except json.JSONDecodeError as error:
                self.stop()
                raise CabinetProcessError(
                    f"first output line {line!r} is not JSON ({error}); log:\n{self.log()}"
                ) from None
        except CabinetProcessError:
            self.log_path.unlink(missing_ok=True)
            raise
        return self.info

    def _read_first_line(self) -> bytes:
        process = self.process
        assert process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stop()
                    raise CabinetProcessError(
                        f"{self.command} printed no line within {self.startup_timeout_s} s; "
                        f"log:\n{self.log()}"
                    )
                if selector.select(remaining):
                    line = process.stdout.readline()
                    if not line:
                        status = process.wait()
                        raise CabinetProcessError(
                            f"{self.command} exited with status {status} before announcing "
                            f"its tty; log:\n{self.log()}"
                        )
                    return line

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int:
        """Send SIGTERM, wait for the exit, kill after ``timeout_s``; returns the exit status."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
