"""metrics.csv (`train.loggers: [csv]`): one row per log record, a `step` column and one column
per scalar, as a spreadsheet or `pandas.read_csv` reads it. Training and evaluation records are
separate rows (a cell a record does not have is empty). A record with a scalar not seen before
rewrites the file with the new column (atomically); the others are appended. On a resume at
iteration `start`, the rows a killed run wrote after it are dropped."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from gsag.atomic import write_text


class CsvLog:
    """The CSV tracker (see the module docstring); it writes no images."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.columns: list[str] = ["step"]
        self.rows: list[dict[str, str]] = []
        if start > 0 and path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or ["step"])
                self.rows = [r for r in reader if _step(r) <= start]
        self._rewrite()

    def scalars(self, values: dict[str, float], step: int) -> None:
        row = {"step": str(step), **{k: _cell(v) for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, lineterminator="\n").writerow(row)

    def image(self, key: str, image: np.ndarray, step: int) -> None:
        """CSV holds no pictures: the panel goes to the other trackers only."""

    def close(self) -> None:
        """Every row is on disk already."""

    def _rewrite(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())


def _cell(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return math.nan
