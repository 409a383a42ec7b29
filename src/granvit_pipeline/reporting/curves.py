"""Loss curves of the training stages behind a model, found through its lineage.

A stage's ``output_dir`` holds ``metrics.jsonl`` (one JSON object per optimizer step: ``step``,
``loss``, ``loss_caption``, ``loss_distill``, ``lr``, ...) and ``run_config.json``, whose
``train.recipe_args.init_from`` names the export the stage started from (``<previous
output_dir>/export``). Following ``init_from`` back from the evaluated stage finds exactly the
stages that produced the model (LM warm-up -> stage 1 -> stage 2), whatever their run names.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from granvit_pipeline.training.run_dir import RunDir, read_metrics

logger = logging.getLogger(__name__)

LOSS_PREFIX = "loss"  # loss, loss_caption, loss_distill, ...
MAX_STAGES = 16  # a lineage longer than this is a cycle


@dataclass(frozen=True)
class StageCurves:
    """One training stage's per-step metrics (``rows`` in step order)."""

    stage: str  # recipe stage name, e.g. "stage1"
    output_dir: Path
    rows: list[dict[str, float]]

    @property
    def loss_keys(self) -> list[str]:
        keys = {k for row in self.rows for k in row if k.startswith(LOSS_PREFIX)}
        return sorted(keys, key=lambda k: (k != LOSS_PREFIX, k))  # total loss first


def _run_config(output_dir: Path) -> Mapping[str, Any]:
    path = RunDir(output_dir).run_config
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def stage_lineage(output_dir: str | Path) -> list[StageCurves]:
    """The stages behind ``output_dir``, oldest first, each with its metrics rows.

    Stops where a ``run_config.json`` is missing or names no ``init_from`` (the first stage).
    """
    found: list[StageCurves] = []
    current: Path | None = Path(output_dir)
    while current is not None and len(found) < MAX_STAGES:
        config = _run_config(current)
        args = config.get("train", {}).get("recipe_args", {})
        stage = str(args.get("stage") or current.name)
        found.append(StageCurves(stage, current, read_metrics(RunDir(current).metrics)))
        init_from = args.get("init_from")
        current = Path(init_from).parent if init_from else None
    return found[::-1]


def loss_curves_png(stages: Sequence[StageCurves], dpi: int = 100) -> bytes | None:
    """One panel per stage with its loss parts against the step, as PNG; None when no stage
    has any step."""
    stages = [s for s in stages if s.rows]
    if not stages:
        return None
    # A Figure without pyplot: no global figure registry, safe in any process or thread.
    fig = Figure(figsize=(4.2 * len(stages), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, stage in zip(axes, stages, strict=True):
        steps = [row["step"] for row in stage.rows]
        for key in stage.loss_keys:
            values = [row.get(key, math.nan) for row in stage.rows]
            ax.plot(steps, values, label=key, marker="." if len(steps) < 50 else None)
        ax.set_title(stage.stage)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
    axes[0].set_ylabel("loss")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
