"""``python -m fleet_server.ingest``: run one ingest worker with settings from ZHIGUI_*.

Unlike ``fleet-server ingest`` it does not check the schema revision first, so it also
runs against a database whose tables were created without Alembic (the tests do that).
"""

import logging
import sys

from fleet_server.ingest.runner import run_worker_until_signal

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(run_worker_until_signal())
