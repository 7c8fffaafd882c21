"""Kiosk agent latencies, idle memory and idle CPU, on a virtual board and a real broker.

Run from the repository root (Mosquitto must be installed):

    .venv/bin/python bench/bench_agent.py --sessions 60

It starts a private Mosquitto, a virtual board at 115200 baud, a real
``kiosk-agent`` process and a stand-in server, then measures:

* unlock command arrived at the agent -> lock pulsed, from the agent's log;
* door closed -> sale received by the server, split into steps (below);
* the agent's resident memory and CPU use over an idle minute.

The agent runs at log level DEBUG, so that it traces each step of a session with
the time on the monotonic clock, which the simulator, the agent and this script
share on one machine. The steps from the door closing to the sale reaching the
stand-in server are:

* settling: the board's stable flag is set on every shelf and stays set until the
  agent takes the weights, from the simulator's record of its stability window;
* flag seen: the agent reads every shelf flagged stable;
* agent window: the agent's own stability window accepts the weights;
* commit: decoding and the SQLite transaction that records the sale;
* hand-off: the outbox's sale is handed to paho for publishing;
* broker: Mosquitto delivers it to the stand-in server's client.

Only the settling belongs to the scale, and the rest is what the agent adds. The
sale's arrival is timed in the stand-in's MQTT callback, as a server would see it,
and not when this script's 50 ms polling notices it; the polling is reported apart.
"""

import argparse
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agent_harness import (
    SIM_SHELVES,
    AgentProcess,
    StandInServer,
    planogram_command,
    unlock_command,
    wait_until,
)
from private_broker import run_private_broker
from simulator.control import ControlClient
from simulator.process import CabinetProcess

KIOSK_ID = "AH-10357-0904"
SETTLE_S = 1.0
PULSE_LOG = re.compile(r"lock pulse (\d+) ms after the command arrived")
TRACE_LOG = re.compile(r"session ([0-9a-f-]{36}): (.*) \(monotonic ([\d.]+) s\)")
PUBLISH_LOG = re.compile(r"published sale ([0-9a-f-]{36}) \(attempt \d+, monotonic ([\d.]+) s\)")
COMMIT_STEP = re.compile(r"sale ([0-9a-f-]{36}) committed")
STEPS = ("settling", "flag seen", "agent window", "commit", "hand-off", "broker")


@dataclass
class Timing:
    """Times on the monotonic clock of one session, from the door closing to the sale."""

    session_id: uuid.UUID
    closed: float
    noticed: float
    arrived: float
    board_stable: float = 0.0
    closed_seen: float = 0.0
    flags_seen: float = 0.0
    weights_stable: float = 0.0
    committed: float = 0.0
    published: float = 0.0
    sale_id: str = ""
    # The simulator's shelf status after the sale, with each shelf's stability changes.
    board_status: dict[str, Any] | None = None

    def steps_ms(self) -> dict[str, float]:
        points = [
            self.closed,
            self.board_stable,
            self.flags_seen,
            self.weights_stable,
            self.committed,
            self.published,
            self.arrived,
        ]
        return {
            step: (end - start) * 1000
            for step, start, end in zip(STEPS, points, points[1:], strict=False)
        }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _proc_stat(pid: int) -> tuple[float, int]:
    """Return (CPU seconds used, resident kB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return ticks / os.sysconf("SC_CLK_TCK"), rss_kb


def _board_stable_at(status: dict[str, Any], closed: float, until: float) -> float:
    """Return when every shelf's stable flag was set for good, as of ``until``.

    A shelf whose flag last became stable before the door closed counts from the
    closing. The simulator keeps the last changes of each shelf's flag.
    """
    stable_at = closed
    for shelf in status["shelves"]:
        onsets = [at for at, stable in shelf["stability_changes"] if stable and at <= until]
        if onsets:
            stable_at = max(stable_at, onsets[-1])
    return stable_at


def _apply_agent_log(log: str, timings: dict[uuid.UUID, Timing]) -> None:
    """Fill in each session's steps from the agent's trace lines."""
    by_sale: dict[str, Timing] = {}
    for match in TRACE_LOG.finditer(log):
        timing = timings.get(uuid.UUID(match[1]))
        if timing is None:
            continue
        step, at = match[2], float(match[3])
        if step == "door closed":
            timing.closed_seen = at
        elif step == "board flags every shelf stable":
            # The last time before the weights were taken counts.
            if not timing.weights_stable:
                timing.flags_seen = at
        elif step == "weights stable":
            timing.weights_stable = at
        elif committed := COMMIT_STEP.fullmatch(step):
            timing.committed = at
            timing.sale_id = committed[1]
            by_sale[committed[1]] = timing
    for match in PUBLISH_LOG.finditer(log):
        timing = by_sale.get(match[1])
        if timing is not None and not timing.published:
            timing.published = float(match[2])


def _print_distribution(label: str, values_ms: list[float]) -> None:
    print(
        f"  {label:<34} p50 {statistics.median(values_ms):6.0f}  "
        f"p95 {_percentile(values_ms, 0.95):6.0f}  p99 {_percentile(values_ms, 0.99):6.0f}  "
        f"max {max(values_ms):6.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=60, help="purchases to time")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle time for CPU and memory")
    parser.add_argument(
        "--agent-log", type=Path, metavar="PATH", help="write the agent's debug log to this file"
    )
    args = parser.parse_args()
    rng = random.Random(5)
    timings: dict[uuid.UUID, Timing] = {}
    load_before = os.getloadavg()
    # The 1-minute load average after each session, because other work on the machine
    # lengthens every step.
    loads: list[float] = []

    with run_private_broker() as broker, tempfile.TemporaryDirectory() as workdir:
        cabinet = CabinetProcess(["--seed", "9", "--settle-s", str(SETTLE_S)])
        cabinet.start()
        server = StandInServer("127.0.0.1", broker.port, KIOSK_ID)
        agent = AgentProcess(
            Path(workdir),
            kiosk_id=KIOSK_ID,
            serial_port=cabinet.tty,
            broker=("127.0.0.1", broker.port),
            log_level="DEBUG",
        )
        agent.start()
        control = ControlClient(cabinet.control)
        try:
            server.install_planogram(planogram_command, 60.0)
            left = {0: 10, 1: 10}
            for _ in range(args.sessions):
                wait_until(server.ready, 60.0, "an idle agent")
                shelf = rng.choice([0, 1])
                if left[shelf] == 0:
                    # An operator refills with a key; the agent counts the shelf again.
                    restocks = len(server.events_of("restock"))
                    control.request(
                        "set_stock", shelf=shelf, product=SIM_SHELVES[shelf][0], count=10
                    )
                    wait_until(
                        lambda n=restocks: len(server.events_of("restock")) > n, 30.0, "the restock"
                    )
                    left[shelf] = 10
                left[shelf] -= 1
                time.sleep(0.6)  # let the idle windows fill, as between real students
                command = unlock_command(KIOSK_ID)
                server.send(command)
                wait_until(
                    lambda c=command: "unlocked" in server.session_states(c.session_id),
                    30.0,
                    "the unlock",
                )
                actor = str(command.session_id)
                control.request("open_door", door=0, actor=actor)
                control.request("take", shelf=shelf, product=SIM_SHELVES[shelf][0], actor=actor)
                closed = time.monotonic()
                control.request("close_door", door=0, actor=actor)
                wait_until(lambda c=command: bool(server.sales_for(c.session_id)), 30.0, "the sale")
                noticed = time.monotonic()
                timing = Timing(
                    command.session_id,
                    closed=closed,
                    noticed=noticed,
                    arrived=server.sale_arrivals[command.session_id],
                )
                timing.board_status = control.request("status")
                timings[command.session_id] = timing
                loads.append(os.getloadavg()[0])

            pid = agent.process.pid if agent.process else 0
            time.sleep(5.0)
            cpu_before, _ = _proc_stat(pid)
            started = time.monotonic()
            time.sleep(args.idle_s)
            cpu_after, rss_kb = _proc_stat(pid)
            idle_cpu = (cpu_after - cpu_before) / (time.monotonic() - started)
            log = agent.log()
            if args.agent_log is not None:
                args.agent_log.write_text(log, encoding="utf-8")
        finally:
            control.close()
            agent.stop()
            server.close()
            cabinet.stop()

    load_after = os.getloadavg()
    pulses = [float(value) for value in PULSE_LOG.findall(log)]
    _apply_agent_log(log, timings)
    for timing in timings.values():
        assert timing.board_status is not None
        timing.board_stable = _board_stable_at(
            timing.board_status, timing.closed, timing.flags_seen
        )
    sessions = list(timings.values())

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(
        "load average (1, 5, 15 min): "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} before, "
        f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} after"
    )
    print(
        "1-minute load average during the sessions: "
        f"median {statistics.median(loads):.2f}, max {max(loads):.2f}"
    )
    print(f"sessions: {len(sessions)}, board at 115200 baud, shelves swing for {SETTLE_S} s")
    print(
        "unlock command arrived -> lock pulsed: "
        f"p50 {statistics.median(pulses):.0f} ms, p95 {_percentile(pulses, 0.95):.0f} ms, "
        f"max {max(pulses):.0f} ms"
    )
    print("door closed -> sale at the server, by step:")
    for step in STEPS:
        _print_distribution(step, [timing.steps_ms()[step] for timing in sessions])
    _print_distribution(
        "door closed -> event at the agent",
        [(timing.closed_seen - timing.closed) * 1000 for timing in sessions],
    )
    _print_distribution(
        "stand-in's polling",
        [(timing.noticed - timing.arrived) * 1000 for timing in sessions],
    )
    print("door closed -> sale at the server:")
    _print_distribution("total", [(timing.arrived - timing.closed) * 1000 for timing in sessions])
    _print_distribution(
        "beyond the board's settling",
        [(timing.arrived - timing.board_stable) * 1000 for timing in sessions],
    )
    _print_distribution(
        f"beyond the {SETTLE_S} s swing, as polled",
        [(timing.noticed - timing.closed - SETTLE_S) * 1000 for timing in sessions],
    )
    print(f"idle: resident memory {rss_kb / 1024:.1f} MB, CPU {idle_cpu:.1%} of one core")


if __name__ == "__main__":
    main()
