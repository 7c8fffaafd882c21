"""``kiosk-sim demo`` end to end: broker, fleet server, boards, agents and students."""

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from conftest import find_mosquitto, skip_or_fail

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
    if find_mosquitto() is None:
        skip_or_fail("Mosquitto not installed: apt-get install mosquitto")
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


@pytest.fixture
def empty_schema_url(postgres_url: str) -> Iterator[str]:
    """URL of a new, empty schema in the test database, selected through search_path."""
    server_url = make_url(postgres_url)
    schema = f"demo_{uuid.uuid4().hex}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield server_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def read_summary(path: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return summary


@pytest.mark.mosquitto
@pytest.mark.postgres
@pytest.mark.timeout(2 * DEMO_TIMEOUT_S + 30)
def test_demo_production_stack_same_totals(empty_schema_url: str, tmp_path: Path) -> None:
    if find_mosquitto() is None:
        skip_or_fail("Mosquitto not installed: apt-get install mosquitto")
    size = ("--cabinets", "2", "--students", "4", "--days", "2", "--purchases", "4")
    production_json = tmp_path / "production.json"
    embedded_json = tmp_path / "embedded.json"

    production = run_demo(
        *size,
        "--broker",
        "mosquitto",
        "--database-url",
        empty_schema_url,
        "--summary-json",
        str(production_json),
    )
    embedded = run_demo(*size, "--summary-json", str(embedded_json))

    on_production = read_summary(production_json, production)
    on_embedded = read_summary(embedded_json, embedded)
    assert (on_production["broker"], on_production["database"]) == ("mosquitto", "postgresql")
    assert (on_embedded["broker"], on_embedded["database"]) == ("embedded", "sqlite")
    assert on_production["matched"] is True
    assert on_embedded["matched"] is True
    assert len(on_production["schools"]) == 2
    assert sum(school["sales"] for school in on_production["schools"]) == 4
    assert sum(school["server_fen"] for school in on_production["schools"]) > 0
    assert on_production["schools"] == on_embedded["schools"]
