"""Demo quality: the staged GranViT recipe on the demo data, learning curve and final metrics.

    .venv/bin/python benchmarks/demo_quality.py --shards /tmp/granvit_demo/shards \
        --out /tmp/demo_quality

Trains the ``demo`` preset with a plain single-process torch loop (``train_staged``): a
text-only LM warm-up of the LLM (stands in for a pretrained LLM), stage 1 (encoder + projector,
LLM frozen; global caption + Bbox2Caption; ``L_caption + lambda * L_distill`` with an EMA
teacher) and stage 2 (encoder frozen; projector + LLM; global caption + Caption2Bbox).
Every ``eval_every`` stage-2 steps it scores Caption2Bbox on the first ``curve_images`` val
images; at the end it scores the full val split. Prints per-stage wall time and steps, the
curve, the final metrics and Caption2Bbox per kind of expression (shape, colour, relation...,
with how often a box on some object is on the named one, against chance), and writes
``curve.png`` + ``results.json`` (+ the model with ``--save-model``) under ``--out``.
``--val-shards`` scores another shard set's val split: runs trained on different data (e.g.
more demo images) are then scored on the same images.

All settings live in :data:`HP`: this plain loop is the fast harness for recipe search.
``--from-run data/06_models`` instead scores what the product itself trained (``kedro run``:
DeepSpeed, the settings in conf): per-stage wall time and steps, the training-loss curves
(``pipeline_losses.png``) and the stage-2 export's metrics on the val split.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from granvit_pipeline.evaluation import evaluate_regions
from granvit_pipeline.evaluation.generate import predict
from granvit_pipeline.evaluation.metrics import rec_metrics
from granvit_pipeline.model import (
    Collator,
    DistillConfig,
    EMATeacher,
    GranViT,
    PromptTemplates,
    StageObjective,
    fit_vocab,
    get_preset,
)
from granvit_pipeline.model.data import preprocess_image
from granvit_pipeline.model.export import export_full
from granvit_pipeline.model.tokenizer import coordinate_token_values
from granvit_pipeline.regions.demo import DemoConfig
from granvit_pipeline.regions.demo.language import RELATIONS
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.granvit.data import fit_tokenizer

# Best recipe found in the searches on the shared 2-core box (closing notes of the training
# issue): still far from the 0.5 goal (Caption2Bbox acc@0.5 0.16-0.19 at seed 0, 0.15-0.16 at
# seed 1). Why, from the by-expression split the report prints: the model puts a box on *some*
# object (0.41-0.44 of the time) but picks the named one no more often than at random (0.37
# against 0.36 chance); it often gives one image the same box whatever the text asks. It has not
# learnt to match words to what they look like. Changes that left that pick at chance: 6000
# stage-2 steps (acc 0.227, any object 0.566), 4 LLM layers (0.153), 20k instead of 3k demo
# images (0.103), global task weight 0.4 (0.102), LLM init std 0.06 (0.197 / 0.162), and even
# the caption before the image tokens in stage 2 (0.223, pick 0.42), the encoder trained in
# stage 2 too (0.084, pick 0.35; both outside the method). Nor is the encoder the cause: stage
# 2 on oracle object features picks at chance too (grounding_oracle.py); at batch 32 the LLM
# does not learn even two-pair recall in text in 24,000 steps (llm_recall.py; at batch 128 it
# does in ~2,000, yet oracle stage 2 at batch 128 memorises the train answers). What helped is
# what eased the model's work: 8 attention heads instead of 4 (+0.06 on two seeds), smooth
# coordinate-token embeddings (+0.03). What did not: a fixed 2-D position code on the image
# tokens (0.094 / 0.058 at amplitude 0.3 / 0.1), stage-2 lr 5e-3 (0.044), soft coordinate
# labels (0.073). Change values here, then mirror them in conf.
HP: dict[str, Any] = {
    "threads": 1,  # torch threads (1 beat 2 on the shared 2-core box)
    "seed": 0,
    "preset": "demo",
    # Merged into the preset: a narrower LLM, patch 8 (64 image tokens). Patch 16 (16 tokens)
    # runs ~3.7x the stage-1 steps/s but its boxes land on an object less often: full val
    # split, acc@0.5 0.049 (patch 16, stage 2 1200 steps at 2e-3), 0.062 (patch 8, same),
    # 0.095 (patch 8, 2400 steps at 3e-3; ~7-11 min of training on 2 cores).
    "model_overrides": {
        "vision": {"patch_size": 8, "num_layers": 3},
        "llm": {"hidden_size": 128, "num_layers": 3, "num_heads": 8, "num_kv_heads": 4,
                "intermediate_size": 384},
    },
    "tokenizer_vocab": 2048,  # upper bound; the demo texts give ~510 tokens
    # Short prompts: the paper's templates are ~20 tokens longer per sample (~1.6x slower here).
    "prompts": {
        "global_caption": "caption:",
        "bbox2caption": "region {box}:",
        "caption2bbox": "find: {caption}",
    },
    # Per stage: optimizer steps, batch (images; one example each), peak lr, task weights.
    # ``lr_projector`` (optional): the projector's own peak lr. ``pack`` (optional): region
    # examples of an image per row (Collator; 4 in stage 2: 0.095 at equal time, 0.140 at
    # equal steps, vs 0.132 unpacked). Stage 2 ``cache_features``:
    # the encoder is frozen, so its features of every train image are computed once (eval
    # mode) and reused (~20% more steps/s; identical maths, the encoder has no dropout).
    # Warm-up loss plateaus by ~100 steps, so 150 is enough.
    # ``coordinate_init``: smooth value code added to the coordinate tokens' random embeddings
    # (GranViT.init_coordinate_embeddings): acc@0.5 0.132 at 0.05, 0.119 at 0.15, 0.087 at 0.
    "lm_warmup": {"steps": 150, "batch": 64, "lr": 3e-3, "all_tokens": True,
                  "coordinate_init": 0.05,
                  "tasks": {"global": 1.0, "bbox2caption": 1.0, "caption2bbox": 1.0}},
    "stage1": {"steps": 400, "batch": 32, "lr": 3e-3, "lambda_distill": 1.0, "ema_alpha": 0.9,
               "tasks": {"bbox2caption": 1.0}},
    "stage2": {"steps": 2400, "batch": 32, "lr": 3e-3, "cache_features": True,
               "tasks": {"global": 0.1, "caption2bbox": 0.9}},
    "schedule": {"warmup_frac": 0.05, "min_lr_frac": 0.1},  # linear warm-up, cosine decay
    "adamw": {"betas": (0.9, 0.98), "weight_decay": 0.0},
    "grad_clip": 1.0,
    "eval_every": 200,  # stage-2 steps between curve points
    "curve_images": 100,  # val images per curve point (the final score uses the whole split)
}  # fmt: skip
STAGES = ("lm_warmup", "stage1", "stage2")


def lr_at(step: int, total: int, peak: float, schedule: dict[str, float]) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, then cosine down to ``min_lr_frac``."""
    warm = max(1, int(schedule["warmup_frac"] * total))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    floor = schedule["min_lr_frac"]
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def batches(samples: list[dict], collator: Collator, size: int, seed: int) -> Iterator[dict]:
    """Endless shuffled epochs of collated batches (drop the last partial batch)."""
    rng, epoch = random.Random(seed), 0
    while True:
        order = samples[:]
        rng.shuffle(order)
        collator.set_epoch(epoch)
        for i in range(0, len(order) - size + 1, size):
            yield collator(order[i : i + size])
        epoch += 1


@torch.no_grad()
def cache_features(model: GranViT, samples: list[dict], chunk: int = 128) -> dict[str, Any]:
    """image_id -> frozen-encoder patch features ``(N, C)`` (eval mode), for stage 2."""
    model.eval()
    out = {}
    for i in range(0, len(samples), chunk):
        part = samples[i : i + chunk]
        pixels = torch.stack([preprocess_image(s["image"], model.image_size)[0] for s in part])
        for s, f in zip(part, model.encode_image(pixels), strict=True):
            out[s["image_id"]] = f
    return out


def _step(obj: StageObjective, opt: torch.optim.Optimizer, batch: dict, clip: float) -> dict:
    losses = obj(batch)  # stage_loss skips the encoder when the batch has image_features
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()
    obj.ema_update()
    return {k: v.item() for k, v in losses.items()}


def run_stage(
    model: GranViT, stage: str, hp: dict, train: list[dict], tok: Any, prompts: PromptTemplates,
    on_step: Callable[[str, int, dict, GranViT], None],
) -> dict[str, float]:  # fmt: skip
    """Train one stage; ``on_step(stage, step, losses, model)`` runs after every step (outside
    the stage's measured wall time, so curve evaluation is not counted).

    Returns ``{"steps", "seconds"}``.
    """
    cfg = hp[stage]
    teacher = EMATeacher(model) if stage == "stage1" and cfg["lambda_distill"] > 0 else None
    distill = DistillConfig(ema_alpha=cfg.get("ema_alpha", 0.9))
    obj = StageObjective(model, stage, teacher, distill, cfg.get("lambda_distill", 0.0))
    proj = {id(p) for p in model.projector.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in proj], "peak": cfg["lr"]},
              {"params": [p for p in params if id(p) in proj],
               "peak": cfg.get("lr_projector") or cfg["lr"]}]  # fmt: skip
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], **hp["adamw"])
    collator = Collator(tok, prompts, cfg["tasks"], model.image_size, seed=hp["seed"],
                        pack=cfg.get("pack", 1))  # fmt: skip
    stream = batches(train, collator, cfg["batch"], hp["seed"] + len(stage))
    seconds, features = 0.0, None
    if stage == "stage2" and cfg.get("cache_features"):  # encoder frozen: encode once
        start = time.perf_counter()
        features = cache_features(model, train)
        seconds += time.perf_counter() - start
    model.train()
    for step in range(cfg["steps"]):
        start = time.perf_counter()
        batch = next(stream)
        if stage == "lm_warmup" and cfg.get("all_tokens"):  # LM loss on every text token
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        if features is not None:
            batch["image_features"] = torch.stack([features[i] for i in batch["image_ids"]])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg["steps"], group["peak"], hp["schedule"])
        losses = _step(obj, opt, batch, hp["grad_clip"])
        seconds += time.perf_counter() - start
        on_step(stage, step + 1, losses, model)
    return {"steps": cfg["steps"], "seconds": seconds}


def build_model(hp: dict, tok: Any) -> GranViT:
    """The preset with ``hp``'s overrides, random weights (seeded), smooth coordinate tokens."""
    torch.manual_seed(hp["seed"])
    config = fit_vocab(get_preset(hp["preset"], **hp["model_overrides"]), len(tok))
    model = GranViT(config)
    if hp["lm_warmup"].get("coordinate_init"):
        values = coordinate_token_values(tok)
        model.init_coordinate_embeddings(values, hp["lm_warmup"]["coordinate_init"])
    print(f"model {config.name}: {model.num_parameters()}, {config.num_image_tokens} image tokens")
    return model


def train_staged(
    hp: dict, train: list[dict], tok: Any, prompts: PromptTemplates,
    on_step: Callable[[str, int, dict, GranViT], None],
    after_stage1: Callable[[GranViT], None] | None = None,
) -> tuple[GranViT, dict[str, dict[str, float]]]:  # fmt: skip
    """The swappable part: build the model and run warm-up, stage 1, stage 2."""
    model, timings = build_model(hp, tok), {}
    for stage in STAGES:
        if hp[stage]["steps"] > 0:
            timings[stage] = run_stage(model, stage, hp, train, tok, prompts, on_step)
            t = timings[stage]
            print(f"{stage}: {t['steps']} steps in {t['seconds']:.1f} s "
                  f"({t['steps'] / t['seconds']:.2f} steps/s)")  # fmt: skip
            if stage == "stage1" and after_stage1 is not None:
                after_stage1(model)
    return model, timings


def plot_curve(curve: list[dict], path: Path) -> None:
    """Stage-2 step -> Caption2Bbox acc@0.5 and mean IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["acc@0.5"] for c in curve], marker="o", label="Caption2Bbox acc@0.5")
    ax.plot(steps, [c["mean_iou"] for c in curve], marker="s", label="mean IoU")
    ax.set(xlabel="stage-2 step", ylabel="val score", ylim=(0, 1), title="demo: stage 2 curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, default=Path("data/05_model_input/shards"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/demo_quality"))
    parser.add_argument(
        "--val-shards", type=Path, help="score on this shard set's val split (default: --shards)"
    )
    parser.add_argument("--hp", type=json.loads, default={}, help="JSON merged into HP (top keys)")
    parser.add_argument(
        "--from-run",
        type=Path,
        metavar="MODELS_DIR",
        help="score a finished `kedro run` (e.g. data/06_models) instead of training",
    )
    parser.add_argument("--limit", type=int, help="val images to score (default: all)")
    parser.add_argument(
        "--save-model", action="store_true", help="also save the trained model (safetensors)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_run:
        report_pipeline_run(args.from_run, args.shards, args.out, args.limit)
        return
    hp = {**HP, **args.hp}
    torch.set_num_threads(hp["threads"])
    train = list(ShardDataset(args.shards, "train"))
    val = list(ShardDataset(args.val_shards or args.shards, "val"))
    prompts = PromptTemplates(**hp["prompts"])
    tok = fit_tokenizer(args.shards, "train", prompts, hp["tokenizer_vocab"], 2, 2)
    print(f"data: {len(train)} train / {len(val)} val images; tokenizer {len(tok)} tokens")
    curve: list[dict] = []

    def on_step(stage: str, step: int, losses: dict, model: GranViT) -> None:
        if step % 50 == 0:
            print(f"  {stage} step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        if stage == "stage2" and step % hp["eval_every"] == 0 and step < hp["stage2"]["steps"]:
            m = evaluate_regions(model, tok, val[: hp["curve_images"]], prompts,
                                 tasks=("caption2bbox",))  # fmt: skip
            model.train()
            curve.append({"step": step, "acc@0.5": m["caption2bbox/acc@0.5"],
                          "mean_iou": m["caption2bbox/mean_iou"]})  # fmt: skip
            print(f"  curve step {step}: acc@0.5 {curve[-1]['acc@0.5']:.3f} "
                  f"mean IoU {curve[-1]['mean_iou']:.3f}")  # fmt: skip

    def after_stage1(model: GranViT) -> None:  # did stage 1 teach the encoder anything?
        m = evaluate_regions(model, tok, val[: hp["curve_images"]], prompts,
                             tasks=("bbox2caption",))  # fmt: skip
        print(f"  after stage 1 (first {hp['curve_images']} val images): Bbox2Caption exact "
              f"match {m['bbox2caption/exact_match']:.3f} "
              f"(chance {m['bbox2caption/exact_match_chance']:.3f})")  # fmt: skip

    model, timings = train_staged(hp, train, tok, prompts, on_step, after_stage1)
    final = evaluate_regions(model, tok, val, prompts, tasks=("bbox2caption",))
    by_expression = grounding_by_expression(model, tok, val, prompts)  # Caption2Bbox, once
    final |= {f"caption2bbox/{k}": v for k, v in by_expression["all"].items()}
    final["by_expression"] = by_expression
    report(hp, timings, curve, final, args.out)
    if args.save_model:
        export_full(model, args.out / "model", tok)  # load_full reads it back
        print(f"wrote {args.out / 'model'}")


_DEMO = DemoConfig()
_ATTRIBUTE_WORDS = {
    "shape": set(_DEMO.shapes), "colour": set(_DEMO.colours), "size": set(_DEMO.sizes)
}  # fmt: skip


def expression_kind(prompt: str) -> str:
    """What a demo referring expression names: e.g. ``shape``, ``colour+size``, ``relation``."""
    if any(rel in prompt for rel in RELATIONS):
        return "relation"
    words = set(prompt.split())
    return "+".join(kind for kind, names in _ATTRIBUTE_WORDS.items() if words & names) or "other"


def grounding_by_expression(
    model: GranViT, tok: Any, val: list[dict], prompts: PromptTemplates
) -> dict[str, dict[str, float]]:
    """Caption2Bbox scores per expression kind (which attributes the model can ground), with
    ``picks_named``: of the boxes on some region, the share on the named one, next to
    ``picks_chance``, that share for a region picked at random (1 / regions of the image)."""
    rows = predict(model, tok, val, "caption2bbox", prompts)
    kinds: dict[str, list[dict]] = {"all": rows}
    for row in rows:
        kinds.setdefault(expression_kind(row["prompt"]), []).append(row)
    out = {}
    for kind, part in sorted(kinds.items()):
        m = rec_metrics([r["prediction"] for r in part], [r["gt_box_norm"] for r in part],
                        image_boxes_norm=[r["image_boxes_norm"] for r in part])  # fmt: skip
        m["picks_named"] = m["acc@0.5"] / m["any_object@0.5"] if m["any_object@0.5"] else 0.0
        m["picks_chance"] = sum(1 / len(r["image_boxes_norm"]) for r in part) / len(part)
        out[kind] = m
    return out


def print_by_expression(by_kind: dict[str, dict[str, float]], title: str) -> None:
    """The :func:`grounding_by_expression` table, one line per expression kind."""
    print(f"{title} by what the expression names: acc@0.5 / box on some region / the named one"
          " of those (chance) / n")  # fmt: skip
    for kind, m in by_kind.items():
        print(f"    {kind:<14} {m['acc@0.5']:.3f} / {m['any_object@0.5']:.3f} / "
              f"{m['picks_named']:.2f} ({m['picks_chance']:.2f}) / {m['n']:.0f}")  # fmt: skip


def report(hp: dict, timings: dict, curve: list[dict], final: dict, out: Path) -> None:
    """Print the tables and write results.json + curve.png under ``out``."""
    total = sum(t["seconds"] for t in timings.values())
    print(f"\ntraining wall time {total:.1f} s (evaluation excluded)")
    print(f"stage-2 curve (first {hp['curve_images']} val images):")
    for c in curve:
        print(f"  step {c['step']:>5}  acc@0.5 {c['acc@0.5']:.3f}  mean IoU {c['mean_iou']:.3f}")
    print("final, full val split:")
    print(f"  Caption2Bbox acc@0.5 {final['caption2bbox/acc@0.5']:.3f}  "
          f"mean IoU {final['caption2bbox/mean_iou']:.3f}  "
          f"unparseable {final['caption2bbox/unparseable_rate']:.3f}  "
          f"(n={final['caption2bbox/n']:.0f})")  # fmt: skip
    print(f"  Caption2Bbox box on some region of the image "
          f"{final['caption2bbox/any_object@0.5']:.3f} (on another one than the named: "
          f"{final['caption2bbox/wrong_object@0.5']:.3f})")  # fmt: skip
    print(f"  Bbox2Caption exact match {final['bbox2caption/exact_match']:.3f}  "
          f"(chance {final['bbox2caption/exact_match_chance']:.3f}, "
          f"n={final['bbox2caption/n']:.0f})")  # fmt: skip
    print_by_expression(final["by_expression"], "  Caption2Bbox")
    results = {"hp": hp, "timings": timings, "curve": curve, "final": final}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_curve(curve, out / "curve.png")
    print(f"wrote {out / 'results.json'} and {out / 'curve.png'}")


def report_pipeline_run(models: Path, shards: Path, out: Path, limit: int | None) -> dict:
    """Score the default pipeline's own outputs (``kedro run``: DeepSpeed path, conf settings):
    per-stage wall time and steps from ``<stage>_result.json``, the training-loss curves from
    ``metrics.jsonl``, and the stage-2 export on the val split."""
    from granvit_pipeline.model.export import load_full
    from granvit_pipeline.training.config import read_run_config

    stages = [
        s for s in ("lm_warmup", "stage1", "stage2") if (models / f"{s}_result.json").is_file()
    ]
    if "stage2" not in stages:
        raise SystemExit(f"{models}: no stage2_result.json; run `kedro run` first")
    results = {s: json.loads((models / f"{s}_result.json").read_text()) for s in stages}
    for stage, res in results.items():
        print(
            f"{stage:>10}: {res['steps']} steps in {res['wall_time_s']:.0f} s "
            f"(final loss {res['final_metrics'].get('loss', float('nan')):.3f})"
        )
    curves = {
        s: [json.loads(line) for line in (models / s / "metrics.jsonl").open()] for s in stages
    }
    _plot_losses(curves, out / "pipeline_losses.png")
    run = read_run_config(models / "stage2" / "run_config.json")
    prompts = PromptTemplates(**run.recipe_args.get("prompts", {}))
    model, tokenizer = load_full(Path(results["stage2"]["export_dir"]))
    val = list(ShardDataset(shards, "val"))[:limit]
    final = evaluate_regions(model, tokenizer, val, prompts=prompts)
    summary = {
        "stages": results,
        "val_images": len(val),
        "metrics": final,
        "total_wall_s": sum(r["wall_time_s"] for r in results.values()),
    }
    (out / "pipeline_results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(final, indent=1))
    return summary


def _plot_losses(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for stage, rows in curves.items():
        ax.plot([offset + r["step"] for r in rows], [r["loss"] for r in rows], label=stage)
        offset += rows[-1]["step"] if rows else 0
    ax.set_xlabel("optimizer step (stages back to back)")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
