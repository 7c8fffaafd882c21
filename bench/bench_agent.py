"""Kiosk agent latencies, idle memory and idle CPU, on a virtual board and a real broker.

Run from the repository root (Mosquitto must be installed):

    .venv/bin/python bench/bench_agent.py --sessions 60

It starts a private Mosquitto, a virtual board at 115200 baud, a real
``kiosk-agent`` process and a stand-in server, then measures:

* unlock command arrived at the agent -> lock pulsed, from the agent's log;
* door closed -> sale received by the server, minus the board's settling time
  (the time the shelves need after the door closes before they read stable);
* the agent's resident memory and CPU use over an idle minute.
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
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=60, help="purchases to time")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle time for CPU and memory")
    args = parser.parse_args()
    rng = random.Random(5)
    closed_to_sale: list[float] = []

    with run_private_broker() as broker, tempfile.TemporaryDirectory() as workdir:
        cabinet = CabinetProcess(["--seed", "9", "--settle-s", str(SETTLE_S)])
        cabinet.start()
        server = StandInServer("127.0.0.1", broker.port, KIOSK_ID)
        agent = AgentProcess(
            Path(workdir),
            kiosk_id=KIOSK_ID,
            serial_port=cabinet.tty,
            broker=("127.0.0.1", broker.port),
            log_level="INFO",
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
                closed_at = time.monotonic()
                control.request("close_door", door=0, actor=actor)
                wait_until(lambda c=command: bool(server.sales_for(c.session_id)), 30.0, "the sale")
                closed_to_sale.append(time.monotonic() - closed_at)

            pid = agent.process.pid if agent.process else 0
            time.sleep(5.0)
            cpu_before, _ = _proc_stat(pid)
            started = time.monotonic()
            time.sleep(args.idle_s)
            cpu_after, rss_kb = _proc_stat(pid)
            idle_cpu = (cpu_after - cpu_before) / (time.monotonic() - started)
            pulses = [float(value) for value in PULSE_LOG.findall(agent.log())]
        finally:
            control.close()
            agent.stop()
            server.close()
            cabinet.stop()

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"sessions: {len(closed_to_sale)}, board at 115200 baud, shelves settle in {SETTLE_S} s")
    print(
        "unlock command arrived -> lock pulsed: "
        f"p50 {statistics.median(pulses):.0f} ms, p95 {_percentile(pulses, 0.95):.0f} ms, "
        f"max {max(pulses):.0f} ms"
    )
    after_settle = [value - SETTLE_S for value in closed_to_sale]
    print(
        "door closed -> sale at the server, beyond the settling time: "
        f"p50 {statistics.median(after_settle) * 1000:.0f} ms, "
        f"p95 {_percentile(after_settle, 0.95) * 1000:.0f} ms"
    )
    print(f"idle: resident memory {rss_kb / 1024:.1f} MB, CPU {idle_cpu:.1%} of one core")


if __name__ == "__main__":
    main()
