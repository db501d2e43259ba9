"""The fault suite's table: for each fault, how many were injected, requests sent, answered and lost.

Tests add rows through the session fixture `fault_report` (tests/conftest.py); at the end of the session the table
is written as JSON and markdown to $FAULTS_REPORT_DIR (default var/faults/) — docs/reliability.md quotes a run.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class FaultRow:
    fault: str
    injected: int
    sent: int
    answered: int
    notes: str = ""
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.answered


@dataclass
class FaultReport:
    rows: list[FaultRow] = field(default_factory=list)

    def add(self, fault: str, injected: int, sent: int, answered: int, notes: str = "",
            seconds: float = 0.0) -> FaultRow:
        row = FaultRow(fault, injected, sent, answered, notes, round(seconds, 1))
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = ["| Fault | Injected | Requests sent | Answered | Lost | Took (s) | What the clients saw |",
                 "|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r.fault} | {r.injected} | {r.sent} | {r.answered} | {r.lost} | {r.seconds} | {r.notes} |"
                  for r in self.rows]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> None:
        if not self.rows:
            return
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                "cpus": __import__("os").cpu_count()}
        (directory / "report.json").write_text(json.dumps(
            {**meta, "faults": [{**asdict(r), "lost": r.lost} for r in self.rows]}, indent=2) + "\n")
        (directory / "report.md").write_text(self.markdown())
