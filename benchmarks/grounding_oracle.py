"""Can the demo LLM learn to ground a caption when the encoder is perfect? (diagnostic)

    .venv/bin/python benchmarks/grounding_oracle.py --out /tmp/grounding_oracle [--grid 4]

``benchmarks/demo_quality.py`` shows the demo model putting a box on *some* object while
picking the named one at chance. This script asks whether the encoder or the LLM side is to
blame: it replaces the encoder's patch features with an oracle built from the demo generator's
ground truth (``demo_scene``) and trains only what stage 2 trains (projector + LLM) with the
harness's loop and settings (``demo_quality.HP``, text warm-up first). Each oracle token is one
cell of a ``grid x grid`` patch grid: its position, and for the object covering it most, one-hot
colour, shape and size plus (unless ``--no-box``) that object's box. The LLM then only has to
match the caption's words to those one-hot codes and copy the box. The report is the harness's
Caption2Bbox split by expression kind, with the share of boxes on the named object next to
chance, on the val split and on 250 train images.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import demo_quality as dq
import torch

from granvit_pipeline.model import GranViT, PromptTemplates
from granvit_pipeline.model.data import preprocess_image
from granvit_pipeline.regions.boxes import normalize_xyxy
from granvit_pipeline.regions.demo import DemoConfig, demo_scene
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.granvit.data import fit_tokenizer

DEMO = DemoConfig()  # the conf's ingest.demo must be the defaults: checked per image below
COLOURS, SHAPES, SIZES = list(DEMO.colours), list(DEMO.shapes), list(DEMO.sizes)
# Oracle token layout (the rest of the encoder width stays 0): one-hot colour, shape, size;
# the covering object's box (xyxy in [-1, 1]); the cell centre; "text line" and "object" flags.
C, S, Z = len(COLOURS), len(SHAPES), len(SIZES)
BOX, CELL, IS_TEXT, IS_OBJECT = C + S + Z, C + S + Z + 4, C + S + Z + 6, C + S + Z + 7
MIN_COVER = 1 / 8  # share of a cell an object must cover to be that cell's object


def oracle_tokens(sample: Mapping[str, Any], width: int, grid: int, box: bool) -> torch.Tensor:
    """``(grid * grid, width)`` oracle features of one demo image (row-major cells)."""
    scene = demo_scene(DEMO, int(str(sample["image_id"]).rsplit("/", 1)[-1]))
    items = [(o.box, o) for o in scene.objects] + [(line.box, None) for line in scene.lines]
    truth = {tuple(map(float, b)) for b, _ in items}  # validation may have dropped some
    given = {tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")) for r in sample["regions"]}
    if not given <= truth:
        raise ValueError(f"{sample['image_id']}: shard boxes not in demo_scene's (conf's "
                         "ingest.demo is not the defaults?)")  # fmt: skip
    size, cell = DEMO.image_size, DEMO.image_size / grid
    out = torch.zeros(grid * grid, width)
    for r in range(grid):
        for c in range(grid):
            i = r * grid + c
            out[i, CELL : CELL + 2] = torch.tensor([(c + 0.5) / grid, (r + 0.5) / grid]) * 2 - 1
            covers = [(_overlap(b, c * cell, r * cell, cell), b, o) for b, o in items]
            area, b, o = max(covers, key=lambda t: t[0])
            if area < MIN_COVER * cell * cell:
                continue
            if o is None:
                out[i, IS_TEXT] = 1.0
            else:
                out[i, [COLOURS.index(o.colour), C + SHAPES.index(o.shape),
                        C + S + SIZES.index(o.size), IS_OBJECT]] = 1.0  # fmt: skip
            if box:
                out[i, BOX : BOX + 4] = torch.from_numpy(normalize_xyxy(b, size, size)) * 2 - 1
    return out


def _overlap(box: tuple[float, ...], x: float, y: float, side: float) -> float:
    w = min(box[2], x + side) - max(box[0], x)
    h = min(box[3], y + side) - max(box[1], y)
    return max(w, 0.0) * max(h, 0.0)


def use_oracle(model: GranViT, samples: list[dict], grid: int, box: bool) -> None:
    """Make ``model.encode_image`` return the oracle tokens of these samples' images.

    Generation and the stage-2 feature cache both call ``encode_image`` with pixels only, so
    the oracle is looked up by the preprocessed pixels' bytes (the demo images are distinct).
    """
    width = model.config.vision.hidden_size
    table = {
        preprocess_image(s["image"], model.image_size)[0].numpy().tobytes():
            oracle_tokens(s, width, grid, box)
        for s in samples
    }  # fmt: skip

    def encode_image(pixel_values: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return torch.stack([table[p.contiguous().numpy().tobytes()] for p in pixel_values])

    model.encode_image = encode_image  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, default=Path("data/05_model_input/shards"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/grounding_oracle"))
    parser.add_argument("--grid", type=int, default=8, help="oracle tokens per side (8 = demo)")
    parser.add_argument("--no-box", action="store_true", help="attributes only, no object box")
    parser.add_argument("--hp", type=json.loads, default={}, help="JSON merged into HP (top keys)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hp = {**dq.HP, **args.hp}
    torch.set_num_threads(hp["threads"])
    train = list(ShardDataset(args.shards, "train"))
    val = list(ShardDataset(args.shards, "val"))
    prompts = PromptTemplates(**hp["prompts"])
    tok = fit_tokenizer(args.shards, "train", prompts, hp["tokenizer_vocab"], 2, 2)
    model = dq.build_model(hp, tok)
    use_oracle(model, train + val, args.grid, box=not args.no_box)

    def on_step(stage: str, step: int, losses: dict, model: GranViT) -> None:
        if step % 200 == 0:
            print(f"  {stage} step {step}: loss {losses['loss']:.3f}", flush=True)

    # No stage 1: the oracle stands in for the encoder it trains; the projector starts fresh.
    timings = {s: dq.run_stage(model, s, hp, train, tok, prompts, on_step)
               for s in ("lm_warmup", "stage2") if hp[s]["steps"] > 0}  # fmt: skip
    for stage, t in timings.items():
        print(f"{stage}: {t['steps']} steps in {t['seconds']:.0f} s")
    results: dict[str, Any] = {
        "hp": hp, "grid": args.grid, "box": not args.no_box, "timings": timings
    }  # fmt: skip
    for split, samples in (("val", val), ("train250", train[:250])):
        by_kind = dq.grounding_by_expression(model, tok, samples, prompts)
        results[split] = by_kind
        dq.print_by_expression(by_kind, f"{split}: Caption2Bbox")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
