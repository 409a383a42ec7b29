"""Compute saved by pruning: the same search with and without a pruner on the demo data.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/tuning_pruning.py                 # defaults
    .venv/bin/python benchmarks/tuning_pruning.py --trials 16 --steps 40 --pruner hyperband

Builds demo shards, a tokenizer and a short lm_warmup (in-process, outside the measurement),
then runs two studies with the same TPE seed and search space (conf/base/parameters_tune.yml,
stage 1 only): one with `--pruner`, one with none. Trials train in this process
(`objective.in_process`), so both searches pay the same per-trial setup. Prints, per search:
training steps taken (the compute measure: every step of a preset costs about the same), wall
time, trial states and the best value (validation loss, `objective.score`); then the steps saved
(goal: >= 40%). The same seed does
not give the same trials after the first pruning: TPE sees pruned trials too.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import yaml

from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.training.engine import train
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.params import CommonParams, StageParams, train_config
from granvit_pipeline.training.granvit.smoke import write_demo_shards
from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.objective import TrialObjective
from granvit_pipeline.tuning.study import open_study, run_worker, storage_url, summary

REPO = Path(__file__).resolve().parents[1]


def conf(name: str) -> dict:
    return yaml.safe_load((REPO / "conf" / "base" / f"parameters_{name}.yml").read_text())


def prepare(root: Path, images: int, warmup_steps: int, preset: str) -> dict:
    """Demo shards, tokenizer and an lm_warmup export (not measured)."""
    base = conf("pretrain")["pretrain"]
    recipe = {**base["common"]["recipe"], "preset": preset}
    if preset == "tiny":
        recipe["overrides"] = {}
    common = CommonParams(
        output_root=root / "models",
        training={**base["common"]["training"], "precision": "fp32", "log_every": 1000},
        recipe=recipe,
    )
    shards = write_demo_shards(root / "shards", n_images=images,
                               split_fractions={"train": 0.8, "val": 0.2, "test": 0.0})  # fmt: skip
    tokenizer = fit_tokenizer(shards, "train", PromptTemplates(**recipe["prompts"]), 2048)
    tokenizer.save_pretrained(root / "tokenizer")
    warm = StageParams(**base["lm_warmup"])
    warm.training["steps"] = warmup_steps
    warm.training["warmup_steps"] = min(warm.training.get("warmup_steps", 0), warmup_steps)
    result = train(train_config("lm_warmup", common, warm, shards, root / "tokenizer", None))
    return {"shards": shards, "tokenizer": root / "tokenizer", "common": common,
            "init_from": Path(result.export_dir), "stage1": base["stage1"]}  # fmt: skip


def search(root: Path, inputs: dict, args: argparse.Namespace, pruner: str) -> dict:
    params = conf("tune")["tune"]
    params["space"].pop("stage2_lr")
    params |= {"n_trials": args.trials, "output_root": str(root / f"trials_{pruner}")}
    params["study"] |= {"name": f"bench-{pruner}", "sampler_seed": args.seed,
                        "storage": f"sqlite:///{root}/optuna_{pruner}.db"}  # fmt: skip
    params["pruner"] |= {"type": pruner, "n_startup_trials": args.startup,
                         "n_warmup_steps": args.report_every}  # fmt: skip
    params["objective"] |= {"stages": ["stage1"], "max_steps": {"stage1": args.steps},
                            "report_every": args.report_every, "in_process": True}  # fmt: skip
    params["objective"]["score"] |= {"device": "cpu"}  # val_loss on the first 128 val images
    cfg = TuneConfig.model_validate(params)
    study = open_study(cfg.study, cfg.pruner)
    objective = TrialObjective(
        cfg, storage_url(cfg.study), inputs["shards"], inputs["tokenizer"], inputs["init_from"],
        inputs["common"], {"stage1": inputs["stage1"]},
    )  # fmt: skip
    started = time.perf_counter()
    run_worker(study, objective, cfg.n_trials)
    wall = time.perf_counter() - started
    steps = sum(t.user_attrs.get("train_steps", 0) for t in study.get_trials())
    result = summary(study)
    return {"pruner": pruner, "train_steps": steps, "wall_s": round(wall, 1),
            "trials": result["trials"], "best_value": result["best"]["value"],
            "best_params": result["best"]["params"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=30)  # stage-1 steps per full trial
    parser.add_argument("--report-every", type=int, default=5)
    parser.add_argument("--startup", type=int, default=3)  # median pruner's n_startup_trials
    parser.add_argument("--pruner", default="median", choices=["median", "hyperband"])
    parser.add_argument("--images", type=int, default=400)  # 80% train, 20% val
    parser.add_argument("--lm-warmup-steps", type=int, default=60)
    parser.add_argument("--preset", default="demo", help="demo (conf overrides) or tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = prepare(root, args.images, args.lm_warmup_steps, args.preset)
        runs = [search(root, inputs, args, "none"), search(root, inputs, args, args.pruner)]
    full, pruned = runs
    saved = 1 - pruned["train_steps"] / full["train_steps"]
    print(json.dumps({"args": vars(args), "searches": runs}, indent=2))
    print(f"\n{'search':<12}{'steps':>8}{'wall s':>9}{'complete':>10}{'pruned':>8}{'best':>10}")
    for run in runs:
        t = run["trials"]
        print(f"{run['pruner']:<12}{run['train_steps']:>8}{run['wall_s']:>9}{t['complete']:>10}"
              f"{t['pruned']:>8}{run['best_value']:>10.4f}")  # fmt: skip
    print(f"training steps saved by pruning: {saved:.0%} (goal >= 40%)")


if __name__ == "__main__":
    main()
