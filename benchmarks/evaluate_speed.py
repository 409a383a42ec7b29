"""Evaluation speed: regions/s per task over ~1,000 demo regions with the ``demo`` preset.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/evaluate_speed.py
    .venv/bin/python benchmarks/evaluate_speed.py --conf-overrides --device cuda

Generates demo images (all into one split) until their Bbox2Caption-eligible regions reach
``--regions``, fits the tokenizer on them, and times the library's evaluation on a randomly
initialised model: Caption2Bbox and Bbox2Caption (greedy batched generation + scoring, which
for Bbox2Caption includes ROUGE-L / CIDEr / BLEU-4 and the OCR subset) and the encoder probe's
feature extraction. A random model never emits ``<eos>``, so every answer runs to the
max-token bound (12 tokens for boxes, 16 for texts): a worst case for generation; a trained
model stops earlier. Prompts are the project's (``pretrain.common.recipe.prompts`` in conf);
``--conf-overrides`` also applies the conf's model overrides (the product's demo model).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import accumulate
from pathlib import Path

import torch
import yaml

from granvit_pipeline.evaluation import eligible_pairs, evaluate_regions, probe_encoder
from granvit_pipeline.evaluation.loading import resolve_device
from granvit_pipeline.model import GranViT, PromptTemplates, fit_vocab, get_preset
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.smoke import write_demo_shards

REPO = Path(__file__).resolve().parents[1]
IMAGES_PER_REGION = 0.45  # demo images carry ~2.8 target regions each; generate with margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=1000)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--conf-overrides", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    common = yaml.safe_load((REPO / "conf/base/parameters_pretrain.yml").read_text())
    recipe = common["pretrain"]["common"]["recipe"]
    prompts = PromptTemplates(**recipe.get("prompts", {}))
    overrides = recipe.get("overrides", {}) if args.conf_overrides else {}
    with tempfile.TemporaryDirectory() as tmp:
        n_images = int(args.regions * IMAGES_PER_REGION) + 20
        shards = write_demo_shards(Path(tmp) / "shards", n_images=n_images)
        samples = list(ShardDataset(shards, "train"))
        tokenizer = fit_tokenizer(shards, "train", prompts, vocab_size=2048)
    counts = list(accumulate(len(eligible_pairs([s], "bbox2caption", prompts)) for s in samples))
    samples = samples[: next(i + 1 for i, c in enumerate(counts) if c >= args.regions)]

    torch.manual_seed(0)
    config = fit_vocab(get_preset(args.preset, **overrides), len(tokenizer))
    model = GranViT(config).to(resolve_device(args.device)).eval()
    print(f"{args.preset} preset{' + conf overrides' if overrides else ''} "
          f"({model.num_parameters()['total'] / 1e6:.1f}M parameters) on {args.device}, "
          f"{torch.get_num_threads()} threads, {len(samples)} images")  # fmt: skip
    start = time.perf_counter()
    m = evaluate_regions(model, tokenizer, samples, prompts, batch_size=args.batch_size)
    m |= probe_encoder(model, samples, samples, labels=("shape", "colour", "size"))
    total = time.perf_counter() - start
    for task in ("caption2bbox", "bbox2caption"):
        print(f"{task:>13}: {m[f'{task}/n']:5.0f} regions, {m[f'{task}/regions_per_s']:7.1f} "
              "regions/s (generation + scoring)")  # fmt: skip
    print(f"{'ocr':>13}: {m['ocr/n']:5.0f} regions (scored within bbox2caption)")
    n_probe = 2 * m["probe/shape/n_val"]
    print(f"{'probe':>13}: {n_probe:5.0f} regions, {m['probe/regions_per_s']:7.1f} regions/s "
          "(encoder + RoIAlign features, train and val passes)")  # fmt: skip
    print(f"{'all':>13}: {total:.1f} s")


if __name__ == "__main__":
    main()
