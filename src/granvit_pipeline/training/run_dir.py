"""A training run's output directory: every file name in it, and the one metrics reader.

Layout of ``<output_dir>/`` (``RunDir(output_dir)`` names each path)::

    run_config.json   TrainConfig + resolved DeepSpeed config (+ world size, device, precision)
    inputs.json       what the run was started from (the stage runner's resume guard)
    metrics.jsonl     one JSON object per optimizer step (rank 0 appends, flushed every step)
    train.log         the training processes' output (``training.launcher``)
    checkpoints/      step-named checkpoints (``training.checkpoint``)
    export/           the recipe's final artifact (written to export.tmp, then renamed)
    result.json       ``TrainResult``, written after the export
    DONE              written last: the run finished and everything above is final

Imports nothing heavy: readers (reports, plots, tuning) use it without torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run's output directory."""

    root: Path

    @property
    def run_config(self) -> Path:
        return self.root / "run_config.json"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def train_log(self) -> Path:
        return self.root / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def export_tmp(self) -> Path:
        return self.root / "export.tmp"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def done(self) -> Path:
        return self.root / "DONE"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The step rows of a ``metrics.jsonl`` in file order; [] when it is missing.

    A line that is not a JSON row with a ``step`` (the torn last line of a run still writing,
    or killed mid-write) is skipped with a warning that names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
        else:
            logger.warning("%s:%d: skipping a line that is not a metrics row", path, number)
    return rows


def last_metrics(path: Path) -> dict[str, Any]:
    """The last complete step row of a ``metrics.jsonl``; {} when there is none."""
    rows = read_metrics(path)
    return rows[-1] if rows else {}
