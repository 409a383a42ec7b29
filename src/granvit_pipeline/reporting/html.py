"""A self-contained HTML run report: loss curves, evaluation metrics, the ablation table and
example predictions drawn on their images.

Self-contained means one file that renders offline: inline CSS, no JavaScript, every image a
base64 PNG ``data:`` URI. Every piece of text from data (captions, predictions, ids, metric
names) goes through :func:`html.escape`, since captions are free text.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from granvit_pipeline.reporting.curves import StageCurves, loss_curves_png, stage_lineage
from granvit_pipeline.reporting.images import data_uri, decode_png, draw_boxes, png_bytes

logger = logging.getLogger(__name__)

TASK_TITLES = {
    "caption2bbox": "Caption2Bbox: the referring expression -> a box",
    "bbox2caption": "Bbox2Caption: a box -> its caption",
}
CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; }
img.curves { max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-family: monospace; }
.meta td:first-child, .legend { color: #555; }
.examples { display: flex; flex-wrap: wrap; gap: 16px; }
.example { display: flex; gap: 12px; width: 560px; border: 1px solid #ddd; padding: 8px; }
.example img { image-rendering: pixelated; width: 256px; height: 256px; }
.example dl { margin: 0; font-size: 0.9em; } .example dt { font-weight: bold; color: #555; }
.example dd { margin: 0 0 6px; word-break: break-word; }
.gt { color: #00aa00; font-weight: bold; } .pred { color: #dc0000; font-weight: bold; }
.ok { color: #00aa00; } .miss { color: #dc0000; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = "".join(
        "<tr>" + "".join(_cell(v, i) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>{head}<tbody>{body}</tbody></table>"


def _cell(value: Any, index: int) -> str:
    if index > 0 and (value is None or isinstance(value, int | float)):
        return f'<td class="num">{_number(value)}</td>'
    return f"<td>{_e(value)}</td>"


def metrics_section(metrics: Mapping[str, Any]) -> str:
    """The flat evaluation metrics, grouped by their prefix (``caption2bbox/...``)."""
    if not metrics:
        return "<h2>Evaluation metrics</h2><p>No metrics.</p>"
    rows = [(name, metrics[name]) for name in sorted(metrics)]
    return "<h2>Evaluation metrics</h2>" + _table(["metric", "value"], rows)


def curves_section(stages: Sequence[StageCurves]) -> str:
    png = loss_curves_png(stages)
    if png is None:
        return "<h2>Loss curves</h2><p>No training metrics found.</p>"
    names = ", ".join(f"{s.stage} ({len(s.rows)} steps)" for s in stages if s.rows)
    return (
        "<h2>Loss curves</h2>"
        f'<p class="legend">{_e(names)}</p>'
        f'<img class="curves" alt="loss curves per training stage" src="{data_uri(png)}">'
    )


def ablation_section(table: Mapping[str, Any] | None) -> str:
    """The ablation ladder (``ablation_table``: columns, rows with label + cells, chance)."""
    if not table:
        return ""
    columns = list(table.get("columns", []))
    rows = [[r.get("label", r.get("row", "")), *(r.get(c) for c in columns)]
            for r in table.get("rows", [])]  # fmt: skip
    chance = table.get("chance") or {}
    if chance:
        rows.append(["chance", *(chance.get(c) for c in columns)])
    return "<h2>Ablation</h2>" + _table(["encoder", *columns], rows)


def _example(row: Mapping[str, Any], image_b64: str, size: int) -> str:
    gt, pred = row.get("gt_box_norm"), row.get("pred_box_norm")
    png = png_bytes(draw_boxes(decode_png(image_b64), gt, pred, size))
    prediction = row.get("prediction", "")
    if row.get("task") == "caption2bbox":
        verdict = "" if pred is not None else ' <span class="miss">(not a box)</span>'
        items = [("expression", _e(row.get("text", ""))),
                 ('<span class="gt">ground truth</span>', _e(row.get("target", ""))),
                 ('<span class="pred">predicted</span>', _e(prediction) + verdict)]  # fmt: skip
    else:
        same = prediction == row.get("target")
        mark = '<span class="ok">(exact)</span>' if same else ""
        items = [('<span class="gt">region</span>', _e(row.get("text", ""))),
                 ("target", _e(row.get("target", ""))),
                 ("predicted", f"{_e(prediction)} {mark}")]  # fmt: skip
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    alt = f"{row.get('image_id')} region {row.get('region_id')}"
    return (
        f'<div class="example"><img alt="{_e(alt)}" src="{data_uri(png)}">'
        f"<dl><dt>image</dt><dd>{_e(alt)}</dd>{dl}</dl></div>"
    )


def examples_section(examples: Mapping[str, Any] | None, size: int = 256) -> str:
    """Example predictions (:func:`~granvit_pipeline.reporting.examples.pick_examples`)."""
    if not examples or not examples.get("rows"):
        return ""
    images = {str(i["image_id"]): i["png_b64"] for i in examples.get("images", [])}
    parts = ['<h2>Examples</h2><p class="legend"><span class="gt">green</span>: ground-truth '
             'box, <span class="pred">red</span>: predicted box</p>']  # fmt: skip
    for task, title in TASK_TITLES.items():
        rows = [r for r in examples["rows"]
                if r.get("task") == task and str(r.get("image_id")) in images]  # fmt: skip
        if rows:
            cards = "".join(_example(r, images[str(r["image_id"])], size) for r in rows)
            parts.append(f'<h3>{_e(title)}</h3><div class="examples">{cards}</div>')
    return "".join(parts)


def render_report(
    evaluation_report: Mapping[str, Any],
    stages: Sequence[StageCurves] = (),
    examples: Mapping[str, Any] | None = None,
    ablation_table: Mapping[str, Any] | None = None,
    title: str = "GranViT run report",
    image_size: int = 256,
) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    model = evaluation_report.get("model") or {}
    meta = [
        ("model", model.get("export_dir")),
        ("weights digest", model.get("weights_digest")),
        ("split", evaluation_report.get("split")),
        ("images scored", evaluation_report.get("images")),
        ("data version", evaluation_report.get("data_version")),
    ]
    meta = [(k, v) for k, v in meta if v is not None]
    body = "".join(
        [
            f"<h1>{_e(title)}</h1>",
            _table([], meta, "meta") if meta else "",
            curves_section(stages),
            metrics_section(evaluation_report.get("metrics") or {}),
            ablation_section(ablation_table),
            examples_section(examples, image_size),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_lineage_report(
    evaluation_report: Mapping[str, Any],
    examples: Mapping[str, Any],
    output_dir: str | Path,
    ablation_table: Mapping[str, Any] | None = None,
    *,
    title: str,
    image_size: int,
) -> str:
    """:func:`render_report` of the model trained in ``output_dir``, with the loss curves of
    every stage it was initialised from (:func:`~granvit_pipeline.reporting.curves.
    stage_lineage`): the stages that produced it, whatever their run names."""
    stages = stage_lineage(output_dir)
    logger.info("run report: %d stage(s) of curves, %d examples", len(stages),
                len(examples.get("rows", [])))  # fmt: skip
    return render_report(evaluation_report, stages, examples, ablation_table, title, image_size)
