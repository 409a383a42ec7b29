"""Ablation nodes: the extra encoder the ladder needs, the same probe for every encoder, and
the table.

Rows (GranViT, arXiv 2510.21501, Table 3), all from the same tokenizer, LM warm-up and data:

1. ``base``: encoder trained on global captions only, as many steps as stage 1
   (``base_encoder`` pipeline, ``global_only_result``);
2. ``stage1``: + Bbox2Caption (stage 1 with ``lambda_distill = 0``);
3. ``stage1_distill``: + self-distillation (the default stage 1, ``stage1_result``);
4. ``stage2``: + Caption2Bbox adaptation (encoder frozen, so its probe equals row 3's; it adds
   the generation metrics of the ``evaluate`` report).

Every encoder gets the encoder-only probe of ``evaluate`` with the same settings, so the
columns compare encoders, not evaluation set-ups.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.evaluation.config import EvaluateParams
from granvit_pipeline.evaluation.probe import probe_with_settings
from granvit_pipeline.model.export import load_encoder
from granvit_pipeline.reporting.html import render_lineage_report
from granvit_pipeline.training.granvit.params import CommonParams, StageParams
from granvit_pipeline.training.granvit.stages import run_stage

logger = logging.getLogger(__name__)

ROWS: dict[str, str] = {
    "base": "base encoder (global captions only)",
    "stage1": "+ stage 1 (Bbox2Caption, no self-distillation)",
    "stage1_distill": "+ self-distillation (stage 1 as configured)",
    "stage2": "+ stage 2 (Caption2Bbox; encoder frozen)",
}
# Generation metrics of the evaluate report shown in the table (stage-2 row only).
GENERATION_COLUMNS = (
    "caption2bbox/acc@0.5",
    "caption2bbox/mean_iou",
    "bbox2caption/exact_match",
    "bbox2caption/rouge_l",
)


def train_stage1_no_distill(
    shards: ShardSet,
    tokenizer: Any,
    lm_warmup_result: Mapping[str, Any],
    common: Mapping[str, Any],
    stage1: Mapping[str, Any],
) -> dict[str, Any]:
    """Row 2's encoder: stage 1 exactly as configured, with ``lambda_distill = 0``; trains in
    ``<output_root>/stage1_no_distill/``."""
    params = StageParams(**stage1)
    params = params.model_copy(update={"recipe": {**params.recipe, "lambda_distill": 0.0}})
    return run_stage(
        "stage1", CommonParams(**common), params, shards.path, tokenizer, lm_warmup_result,
        run_name="stage1_no_distill",
    )  # fmt: skip


def score_ablation_encoders(
    global_only_result: Mapping[str, Any],
    stage1_no_distill_result: Mapping[str, Any],
    stage1_result: Mapping[str, Any],
    shards: ShardSet,
    evaluate_params: Mapping[str, Any],
) -> dict[str, dict[str, float]]:
    """Row name -> probe metrics of that row's encoder (``evaluate.probe`` settings)."""
    cfg = EvaluateParams.model_validate(evaluate_params)
    exports = {
        "base": global_only_result,
        "stage1": stage1_no_distill_result,
        "stage1_distill": stage1_result,
    }
    return {
        row: probe_with_settings(load_encoder(result["export_dir"]), shards.path, cfg)
        for row, result in exports.items()
    }


def build_ablation_table(
    encoder_probes: Mapping[str, Mapping[str, float]], evaluation_report: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """-> (the table as JSON: columns + one dict per row, the same as Markdown).

    Columns: every probe accuracy (``probe/<label>/accuracy``) plus :data:`GENERATION_COLUMNS`;
    a cell a row does not have is ``None`` (shown as "-"). The stage-2 row's probe comes from
    the evaluate report (its encoder is stage 1's, frozen).
    """
    metrics = evaluation_report["metrics"]
    probe_columns = sorted(
        {k for probes in encoder_probes.values() for k in probes if k.endswith("/accuracy")}
    )
    columns = [*probe_columns, *GENERATION_COLUMNS]
    sources = {**encoder_probes, "stage2": metrics}
    rows = []
    for row, label in ROWS.items():
        values = sources.get(row, {})
        cells = {c: values.get(c) for c in columns}
        if row != "stage2":
            cells |= dict.fromkeys(GENERATION_COLUMNS)
        rows.append({"row": row, "label": label, **cells})
    chance = {
        c: encoder_probes["base"].get(c.replace("/accuracy", "/chance")) for c in probe_columns
    }
    table = {
        "columns": columns,
        "rows": rows,
        "chance": chance,
        "split": evaluation_report.get("split"),
        "data_version": evaluation_report.get("data_version"),
    }
    return table, _markdown(table)


def _markdown(table: Mapping[str, Any]) -> str:
    columns = table["columns"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"Ablation on the {table['split']} split (data {table['data_version']})",
        "",
        "| encoder | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    lines += [f"| {r['label']} | " + " | ".join(fmt(r[c]) for c in columns) + " |"
              for r in table["rows"]]  # fmt: skip
    lines.append("| chance (majority class) | "
                 + " | ".join(fmt(table["chance"].get(c)) for c in columns) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def render_ablation_report(
    evaluation_report: Mapping[str, Any],
    report_examples: Mapping[str, Any],
    stage2_result: Mapping[str, Any],
    params: Mapping[str, Any],
    ablation_table: Mapping[str, Any],
) -> str:
    """The run report of ``evaluate`` (``evaluate.report`` settings) with the ablation table."""
    cfg = EvaluateParams.model_validate(params).report
    return render_lineage_report(
        evaluation_report, report_examples, stage2_result["output_dir"], ablation_table,
        title=cfg.title, image_size=cfg.image_size,
    )  # fmt: skip
