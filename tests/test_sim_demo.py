"""``kiosk-sim demo`` end to end: broker, fleet server, boards, agents and students."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# A demo of two cabinets and four purchases takes about 30 s on two cores, most of it
# starting the processes.
DEMO_TIMEOUT_S = 240
SUMMARY_ROW = re.compile(
    r"^  (?P<school>\S.*?)\s+(?P<sales>\d+)\s+¥(?P<server>\d+\.\d\d)\s+(?P<kept>\d+)\s+"
    r"¥(?P<truth>\d+\.\d\d)\s+(?P<match>yes|NO)$"
)


def run_demo(*options: str) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).with_name("kiosk-sim")
    return subprocess.run(
        [str(program), "demo", "--exit-when-done", "--seed", "7", *options],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_demo_totals_match_ground_truth() -> None:
    result = run_demo("--cabinets", "2", "--students", "4", "--days", "2", "--purchases", "6")
    output = result.stdout

    assert result.returncode == 0, f"stdout:\n{output}\nstderr:\n{result.stderr}"
    rows = [match.groupdict() for line in output.splitlines() if (match := SUMMARY_ROW.match(line))]
    schools = [row for row in rows if row["school"] != "total"]
    [total] = [row for row in rows if row["school"] == "total"]
    assert len(schools) == 2, output
    assert sum(int(row["sales"]) for row in schools) == 6
    assert int(total["sales"]) == 6
    assert int(total["kept"]) > 0
    for row in rows:
        assert row["server"] == row["truth"], row
        assert row["match"] == "yes", row
    assert output.count("completed") == 6
    assert "stopped every process" in output


@pytest.mark.mosquitto
@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_demo_with_mosquitto() -> None:
    if not Path("/usr/sbin/mosquitto").exists() and not shutil.which("mosquitto"):
        pytest.skip("Mosquitto not installed: apt-get install mosquitto")
    result = run_demo(
        "--broker",
        "mosquitto",
        "--cabinets",
        "1",
        "--students",
        "2",
        "--days",
        "1",
        "--purchases",
        "2",
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "broker (mosquitto)" in result.stdout
