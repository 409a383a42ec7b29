"""Stage-1 step throughput: our GranViT step (plain torch and DeepSpeed) vs the shared baseline.

    # GPU, beside the baseline in the same run (same machine); benchmarks/gpu_train_step.sh
    # runs this with the levers below in one device call:
    python benchmarks/train_step.py --preset paper --batch 16 --checkpointing off \
        --baseline ../shared/benchmarks/baseline_vlm_step.py
    # CPU: the demo preset, DeepSpeed overhead vs a plain torch loop
    python benchmarks/train_step.py --preset demo --batch 32

The step is GranViT stage 1 exactly as training runs it (``StageObjective``): encoder +
projector trained, LLM frozen with gradients flowing through it, loss on the answer tokens
only (the LM head runs over text positions alone), synthetic pixels and ``--text`` answer
tokens per sample like the baseline. ``--checkpointing`` keeps the preset's activation
checkpointing (paper: on; the baseline has none) or forces it on/off; ``--compile`` runs the
plain step through ``torch.compile``. ``--distill`` adds self-distillation (EMA teacher on
one box crop per sample), which the baseline does not do. DeepSpeed uses the project's
``conf/base/deepspeed`` templates resolved by the trainer (bf16 on CUDA, fp32 on CPU): mode
``ds`` is ZeRO-2 (what the baseline runs), ``ds0`` ZeRO-0. With one process ZeRO has nothing to
partition across, so ``ds0`` shows what ZeRO-2's gradient bucketing costs there.
The baseline's samples/s come from its own script run in a subprocess here; the ratio is ours
over its DeepSpeed mode. MFU is counted with the baseline's FLOPs per sample (work-equivalent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from granvit_pipeline.model import GranViT, get_preset
from granvit_pipeline.model.distill import DistillConfig, EMATeacher
from granvit_pipeline.model.objectives import StageObjective

PEAK_BF16 = 989.4e12  # dense bf16 TFLOP/s, H100/H200 SXM (as the baseline)
REPO = Path(__file__).resolve().parents[1]


def synthetic_batch(model: GranViT, batch: int, text: int, device: str) -> dict:
    size, vocab = model.image_size, model.config.llm.vocab_size
    ids = torch.randint(5, vocab, (batch, text), device=device)
    box = torch.tensor([size * 0.1, size * 0.2, size * 0.6, size * 0.7], device=device)
    return {
        "pixel_values": torch.randn(batch, 3, size, size, device=device),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": ids.clone(),  # every text token is an answer token, as in the baseline
        "boxes_px": box.expand(batch, 4).clone(),
        "has_box": torch.ones(batch, dtype=torch.bool, device=device),
    }


def build_objective(
    preset: str, distill: bool, device: str, dtype: torch.dtype, checkpointing: str
) -> StageObjective:
    overrides = (
        {} if checkpointing == "preset" else {"gradient_checkpointing": checkpointing == "on"}
    )
    cfg = get_preset(preset, attn_implementation="sdpa", **overrides)
    with torch.device(device):  # random init on the GPU: seconds instead of a minute on the CPU
        model = GranViT(cfg).to(dtype)
    teacher = EMATeacher(model) if distill else None
    return StageObjective(model, "stage1", teacher, DistillConfig(), 1.0 if distill else 0.0)


def plain_step(objective: StageObjective, batch: dict, device: str, compile_model: bool):
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device == "cuda")
    forward = torch.compile(objective) if compile_model else objective

    def step() -> float:
        loss = forward(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        objective.ema_update()
        return loss

    return step


DEEPSPEED_MODES = {"ds": 2, "ds0": 0}  # mode -> ZeRO stage


def deepspeed_step(
    objective: StageObjective, batch: dict, device: str, micro_batch: int, zero_stage: int
):
    import deepspeed

    from granvit_pipeline.training.config import (
        TrainConfig,
        load_template,
        resolve_deepspeed_config,
    )
    from granvit_pipeline.training.toy import ToyRecipe

    if zero_stage == 0:
        template = "zero0.json"
    else:
        template = "zero2_bf16.json" if device == "cuda" else "zero2_cpu.json"
    path = REPO / "conf" / "base" / "deepspeed" / template
    cfg = TrainConfig(
        recipe=ToyRecipe,
        steps=10**6,
        micro_batch_size=micro_batch,
        lr=1e-5,
        zero_stage=zero_stage,
        deepspeed_config=path,
        output_dir=Path("/tmp/train_step_bench"),
    )
    ds_config = resolve_deepspeed_config(load_template(path), cfg, 1, device, source=str(path))
    params = [p for p in objective.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=objective, model_parameters=params, config=ds_config)

    def step() -> float:
        loss = engine(batch)["loss"]
        engine.backward(loss)
        engine.step()
        objective.ema_update()
        return loss

    return step


def time_steps(step, steps: int, device: str) -> float:
    for _ in range(3):  # warm-up: allocator, kernels, DeepSpeed buckets
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)  # one sync at the end
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def run_baseline(script: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(script),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--text",
        str(args.text),
        "--modes",
        "plain,ds,lean",
    ]
    if args.preset != "paper":
        cmd.append("--tiny")
    from granvit_pipeline.training.engine import free_port

    env = {**os.environ, "MASTER_PORT": str(free_port())}  # ours still holds its port
    # Its JSON after each mode goes to our output as it comes: a run cut off by a time limit
    # still shows the modes that finished.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            if line.startswith("{"):
                print(f"baseline: {line.strip()}", flush=True)
                lines.append(line)
    if not lines:
        return {"error": f"the baseline printed no result (exit {proc.returncode})"}
    return json.loads(lines[-1])


def _setup_single_process_env() -> None:
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29581",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")  # DeepSpeed chokes on "9.0a" (GPU.md)


def measure_mode(mode: str, args: argparse.Namespace, device: str, dtype: torch.dtype) -> dict:
    """Step time of one mode (``plain``, ``ds`` or ``ds0``) on a fresh model."""
    # DeepSpeed keeps fp32 master weights and casts itself (mixed precision).
    model_dtype = dtype if mode == "plain" else torch.float32
    objective = build_objective(args.preset, args.distill, device, model_dtype, args.checkpointing)
    batch = synthetic_batch(objective.model, args.batch, args.text, device)
    if mode == "plain":
        step = plain_step(objective, batch, device, args.compile)
    else:
        step = deepspeed_step(objective, batch, device, args.batch, DEEPSPEED_MODES[mode])
    seconds = time_steps(step, args.steps, device)
    result = {"step_s": round(seconds, 4), "samples_per_s": round(args.batch / seconds, 2)}
    if device == "cuda":
        result["max_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="paper" if torch.cuda.is_available() else "demo")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--text", type=int, default=48)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--modes", default="plain,ds,ds0", help="of plain, ds, ds0")
    parser.add_argument("--distill", action="store_true")
    parser.add_argument(
        "--checkpointing",
        choices=("preset", "on", "off"),
        default="preset",
        help="activation checkpointing: the preset's setting (paper: on) or forced on/off",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile (plain mode)")
    parser.add_argument("--out", type=Path, help="also write the report (JSON) here")
    parser.add_argument("--baseline", type=Path, help="the shared baseline_vlm_step.py")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if set(modes) - {"plain", *DEEPSPEED_MODES}:
        parser.error(f"--modes: choose from plain, {', '.join(DEEPSPEED_MODES)}")
    _setup_single_process_env()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "preset": args.preset,
        "batch": args.batch,
        "text": args.text,
        "distill": args.distill,
        "checkpointing": args.checkpointing,
        "compile": args.compile,
        "torch_threads": torch.get_num_threads(),
    }
    for mode in modes:
        try:
            report[mode] = measure_mode(mode, args, device, dtype)
        except Exception as error:  # an OOM in one mode should not hide the others
            report[mode] = {"error": f"{type(error).__name__}: {error}"[:400]}
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        print(json.dumps(report), flush=True)
        write_report(report, args.out)
    for mode in DEEPSPEED_MODES:  # DeepSpeed's cost over the plain torch step
        if "step_s" in report.get("plain", {}) and "step_s" in report.get(mode, {}):
            overhead = 100 * (report[mode]["step_s"] / report["plain"]["step_s"] - 1)
            report[mode]["overhead_vs_plain_pct"] = round(overhead, 1)
    if args.baseline:
        base = run_baseline(args.baseline, args)
        report["baseline"] = base
        if "ds" in base and "samples_per_s" in base["ds"]:
            for mode in ("plain", *DEEPSPEED_MODES):
                if "samples_per_s" in report.get(mode, {}):
                    ratio = report[mode]["samples_per_s"] / base["ds"]["samples_per_s"]
                    report[mode]["vs_baseline_ds"] = round(ratio, 3)
                    if device == "cuda":
                        work = base["ds"]["tflops_per_sample"] * 1e12
                        mfu = 100 * work * report[mode]["samples_per_s"] / PEAK_BF16
                        report[mode]["mfu_pct_baseline_work"] = round(mfu, 1)
    print(json.dumps(report, indent=1))
    write_report(report, args.out)


def write_report(report: dict, path: Path | None) -> None:
    """The report so far to ``path`` (whole file replaced: a reader never sees half of it)."""
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(path)


if __name__ == "__main__":
    main()
