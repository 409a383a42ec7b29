"""A training run's curves (loss parts, lr, grad norm, throughput) from its metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from granvit_pipeline.training.run_dir import read_metrics

PANELS = (
    ("loss", lambda key: key.startswith("loss")),
    ("learning rate", lambda key: key == "lr"),
    ("grad norm", lambda key: key == "grad_norm"),
    ("samples/s", lambda key: key == "samples_per_s"),
)


def plot_metrics(metrics_path: Path, out_path: Path, title: str = "") -> Path | None:
    """Write a PNG of the curves in ``metrics_path``; None when it holds no steps."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    steps = [row["step"] for row in rows]
    # A Figure without pyplot: no global figure registry, safe in any process or thread.
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (label, wanted) in zip(fig.subplots(2, 2).flat, PANELS, strict=True):
        for key in sorted(k for k in rows[0] if wanted(k)):
            values = [row.get(key, math.nan) for row in rows]
            ax.plot(steps, values, label=key, marker="." if len(steps) < 50 else None)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if label == "loss":
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path
