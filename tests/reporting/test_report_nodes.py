"""The report nodes of ``evaluate`` and the example picker, on synthetic inputs and a tiny
random-init GranViT (the whole pipeline runs in tests/pipelines/test_evaluate_pipeline.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from pydantic import ValidationError

from granvit_pipeline.evaluation.config import EvaluateParams
from granvit_pipeline.model import GranViT, PromptTemplates, fit_vocab, get_preset, train_tokenizer
from granvit_pipeline.pipelines.ablation import nodes as ablation_nodes
from granvit_pipeline.pipelines.evaluate import nodes
from granvit_pipeline.reporting import examples as examples_module
from granvit_pipeline.reporting.browser import find_chromium
from granvit_pipeline.reporting.examples import pick_examples

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"


def _params(**report: Any) -> dict[str, Any]:
    params = yaml.safe_load((CONF / "parameters_evaluate.yml").read_text())["evaluate"]
    return {**params, "report": {**params["report"], **report}}


def test_report_parameters_validate_and_typos_fail() -> None:
    cfg = EvaluateParams.model_validate(_params())
    assert cfg.report.examples > 0 and cfg.report.image_size == 256
    with pytest.raises(ValidationError, match="screenshots"):
        EvaluateParams.model_validate(_params(screenshots=True))
    with pytest.raises(ValidationError, match="examples"):
        EvaluateParams.model_validate(_params(examples=-1))


def _sample() -> dict[str, Any]:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((8, 8, 31, 31), fill="red")
    region = {"region_id": "r0", "x1": 8, "y1": 8, "x2": 32, "y2": 32, "text": "the red square",
              "text_type": "refexp", "iscrowd": False, "text_is_target": True}  # fmt: skip
    return {"image_id": "img0", "image": image, "width": 64, "height": 64,
            "global_caption": "a red square", "regions": [region]}  # fmt: skip


def test_pick_examples_with_a_tiny_model() -> None:
    prompts = PromptTemplates()
    texts = [prompts.bbox2caption, prompts.caption2bbox, "the red square", "[0.12,0.12,0.50]"]
    tokenizer = train_tokenizer(texts * 3, vocab_size=500)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GranViT(fit_vocab(get_preset("tiny"), len(tokenizer)))
    out = pick_examples(model, tokenizer, [_sample()], prompts, per_task=5)
    json.dumps(out)  # JSON all the way
    assert [r["task"] for r in out["rows"]] == ["caption2bbox", "bbox2caption"]
    assert all(r["text"] == "the red square" for r in out["rows"])
    assert out["rows"][0]["gt_box_norm"] == [0.125, 0.125, 0.5, 0.5]
    (image,) = out["images"]
    with Image.open(io.BytesIO(base64.b64decode(image["png_b64"]))) as decoded:
        assert decoded.size == (64, 64)


def test_pick_examples_parses_predicted_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_predict(model, tokenizer, samples, task, prompts, **kwargs):
        answer = "[0.10, 0.20, 0.30, 0.40]" if task == "caption2bbox" else "a square"
        row = {
            "image_id": "img0",
            "region_id": "r0",
            "task": task,
            "prompt": "p",
            "target": "t",
            "prediction": answer,
            "gt_box_norm": (0.1, 0.1, 0.5, 0.5),
        }
        return [row, {**row, "prediction": "no box here"}]

    monkeypatch.setattr(examples_module, "predict", fake_predict)
    out = pick_examples(None, None, [_sample()], PromptTemplates(), per_task=None)
    c2b = [r for r in out["rows"] if r["task"] == "caption2bbox"]
    assert c2b[0]["pred_box_norm"] == [0.1, 0.2, 0.3, 0.4] and c2b[1]["pred_box_norm"] is None
    assert all(r["pred_box_norm"] is None for r in out["rows"] if r["task"] == "bbox2caption")
    out = pick_examples(None, None, [_sample()], PromptTemplates(), per_task=1)
    assert len(out["rows"]) == 2


def test_render_run_report_reads_the_lineage_and_takes_the_ablation(
    evaluation_report: dict, examples: dict, lineage: Path, ablation_table: dict
) -> None:
    stage2_result = {"stage": "stage2", "output_dir": str(lineage)}
    html = nodes.render_run_report(evaluation_report, examples, stage2_result, _params())
    assert "lm_warmup (5 steps), stage1 (8 steps), stage2 (6 steps)" in html
    assert "Ablation" not in html
    with_table = ablation_nodes.render_ablation_report(
        evaluation_report, examples, stage2_result, _params(title="Ablation run"), ablation_table
    )
    assert "<h1>Ablation run</h1>" in with_table and "<h2>Ablation</h2>" in with_table


def test_screenshot_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nodes.screenshot_run_report("<p>x</p>", _params(screenshot=False)) == {}
    monkeypatch.setenv("GRANVIT_CHROMIUM", "definitely-not-a-browser")
    assert nodes.screenshot_run_report("<p>x</p>", _params(screenshot=True)) == {}


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (make browser)")
def test_screenshot_node_returns_a_png(evaluation_report: dict) -> None:
    html = nodes.render_run_report(evaluation_report, {}, {"output_dir": "/nonexistent"},
                                   _params())  # fmt: skip
    shot = nodes.screenshot_run_report(html, _params(screenshot=True))
    with Image.open(io.BytesIO(shot[nodes.SCREENSHOT])) as image:
        assert image.format == "PNG" and len(image.convert("RGB").getcolors(1 << 20) or []) != 1
