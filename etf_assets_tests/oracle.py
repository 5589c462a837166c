"""An independent reading of the archive rules in plain Python (csv + datetime), to check the
SQL loader against. It shares no code with etf_assets."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]


@dataclass
class Expected:
    rows: dict[tuple[str, date], tuple] = field(default_factory=dict)  # (symbol, date) -> values
    rejected_lines: set[tuple[str, int]] = field(default_factory=set)  # (file, line)
    rejected_files: set[str] = field(default_factory=set)
    blank_rows: int = 0
    data_lines: int = 0  # non-empty lines after the header, in files that could be read
    meta_names: dict[str, str] = field(default_factory=dict)  # NASDAQ Symbol -> Security Name

    def symbols_with_rows(self) -> set[str]:
        return {symbol for symbol, _ in self.rows}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_expected(root: Path) -> Expected:
    expected = Expected()
    with open(root / "symbols_valid_meta.csv", newline="", encoding="utf-8") as fh:
        for record in csv.DictReader(fh):
            expected.meta_names.setdefault(record["NASDAQ Symbol"], record["Security Name"])
    for folder in ("stocks", "etfs"):
        for path in sorted((root / folder).glob("*.csv")):
            _read_file(expected, path, f"{folder}/{path.name}", path.name[: -len(".csv")])
    return expected


def _read_file(expected: Expected, path: Path, name: str, symbol: str) -> None:
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError:
        expected.rejected_files.add(name)
        return
    if lines[0].rstrip("\r").split(",") != HEADER:
        expected.rejected_files.add(name)
        return
    seen: set[date] = set()
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line:
            continue
        expected.data_lines += 1
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) == 8 and fields[7] == "":  # a trailing comma is tolerated
            fields = fields[:7]
        if len(fields) == 7 and fields[0] and all(v == "" for v in fields[1:]):
            expected.blank_rows += 1
            continue
        try:
            day = datetime.strptime(fields[0], "%Y-%m-%d").date() if len(fields) == 7 else None
        except ValueError:
            day = None
        values = [_number(v) for v in fields[1:]] if day else [None]
        volume = values[-1]
        if day is None or None in values or volume < 0 or volume != int(volume) or day in seen:
            expected.rejected_lines.add((name, number))
            continue
        seen.add(day)
        expected.rows[(symbol, day)] = (*values[:-1], int(volume))
