"""Record of every simulated action, to check what the agent and server inferred.

Each record stores who did what, where and when, and for goods the real weight of
every pack moved. Records stay in memory and, when a path is given, are appended
to a JSON-lines file as they happen.
"""

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroundTruthRecord:
    """One action; ``uptime_ms`` is on the same scale as the board's event timestamps."""

    seq: int
    uptime_ms: int
    wall_time: float
    actor: str
    action: str
    door: int | None = None
    shelf: int | None = None
    product: str | None = None
    count: int = 0
    weights_mg: tuple[int, ...] = ()
    # For a put: True when the shelf does not carry the product.
    misplaced: bool | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["weights_mg"] = list(self.weights_mg)
        return record


@dataclass
class GroundTruthLog:
    """Thread-safe list of records with an optional JSON-lines copy on disk."""

    path: Path | None = None
    _records: list[GroundTruthRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **fields: Any) -> GroundTruthRecord:
        """Append a record built from ``fields``; ``seq`` is assigned here."""
        with self._lock:
            record = GroundTruthRecord(seq=len(self._records) + 1, **fields)
            self._records.append(record)
            if self.path is not None:
                self._append_to_file(record)
        return record

    def records(self, since_seq: int = 0) -> list[GroundTruthRecord]:
        """Return the records with ``seq`` greater than ``since_seq``, oldest first."""
        with self._lock:
            return self._records[since_seq:]

    def _append_to_file(self, record: GroundTruthRecord) -> None:
        assert self.path is not None
        line = json.dumps(record.to_dict(), ensure_ascii=False)
        try:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
        except OSError as error:
            # The record stays in memory but is missing from the file.
            logger.error(
                "cannot append ground truth record %d to %s: %s", record.seq, self.path, error
            )
