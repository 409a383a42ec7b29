"""Synthetic report inputs: a two-stage lineage with metrics, a metrics report, examples drawn
on a 64 px image, an ablation table. No model, no Kedro."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

NASTY = '<script>console.error("injected")</script> & "quotes"'


def _stage(root: Path, name: str, init_from: Path | None, steps: int) -> Path:
    out = root / name
    out.mkdir(parents=True)
    args = {"stage": name, "init_from": None if init_from is None else str(init_from / "export")}
    (out / "run_config.json").write_text(json.dumps({"train": {"recipe_args": args}}))
    rows = [{"step": s, "loss": 3.0 / s, "loss_caption": 2.0 / s, "loss_distill": 1.0 / s,
             "lr": 1e-3} for s in range(1, steps + 1)]  # fmt: skip
    lines = [json.dumps(r) for r in rows]
    (out / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9')  # torn last line
    return out


@pytest.fixture
def lineage(tmp_path: Path) -> Path:
    """lm_warmup -> stage1 -> stage2 (named by run, not by stage); returns stage 2's dir."""
    warmup = _stage(tmp_path / "models", "lm_warmup", None, 5)
    stage1 = _stage(tmp_path / "models", "stage1", warmup, 8)
    return _stage(tmp_path / "models", "stage2", stage1, 6)


def _png_b64() -> str:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 40, 40), fill=(30, 60, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture
def examples() -> dict[str, Any]:
    box = [0.25, 0.25, 0.625, 0.625]
    common = {"image_id": "img-1", "region_id": "r1", "text_type": "refexp", "text": NASTY}
    return {
        "images": [{"image_id": "img-1", "width": 64, "height": 64, "png_b64": _png_b64()}],
        "rows": [
            {**common, "task": "caption2bbox", "prompt": "p", "target": "[0.25,0.25,0.62,0.62]",
             "prediction": "[0.20,0.30,0.60,0.70]", "gt_box_norm": box,
             "pred_box_norm": [0.2, 0.3, 0.6, 0.7]},
            {**common, "task": "caption2bbox", "prompt": "p", "target": "[0.25,0.25,0.62,0.62]",
             "prediction": "blue square", "gt_box_norm": box, "pred_box_norm": None},
            {**common, "task": "bbox2caption", "prompt": "p", "target": "blue square",
             "prediction": NASTY, "gt_box_norm": box, "pred_box_norm": None},
        ],
    }  # fmt: skip


@pytest.fixture
def evaluation_report(lineage: Path) -> dict[str, Any]:
    return {
        "metrics": {"caption2bbox/acc@0.5": 0.5, "bbox2caption/rouge_l": 0.25, "ocr/n": 3},
        "split": "val",
        "images": 4,
        "data_version": "abc123",
        "model": {"stage": "stage2", "export_dir": str(lineage / "export"), "digest": "d1"},
    }


@pytest.fixture
def ablation_table() -> dict[str, Any]:
    columns = ["probe/shape/accuracy", "caption2bbox/acc@0.5"]
    return {
        "columns": columns,
        "rows": [
            {"row": "base", "label": "base encoder", columns[0]: 0.4, columns[1]: None},
            {"row": "stage2", "label": "+ stage 2", columns[0]: 0.7, columns[1]: 0.5},
        ],
        "chance": {columns[0]: 0.33},
    }
