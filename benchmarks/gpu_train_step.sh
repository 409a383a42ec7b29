#!/usr/bin/env bash
# The stage-1 step on one GPU, beside the shared baseline, in one device call (../shared/GPU.md).
#
# `make gpu-bundle` here first: it fills the git-ignored .whl/ (DeepSpeed and the project's pins
# that the GPU image lacks or has in other versions) and .gpu/ (the shared baseline). Then run
# this from the repo root on the GPU machine with .whl and .gpu carried (device run: timeout_s
# 570; the parts below are limited to 550 s together).
# Writes one JSON report per part to $OUT and all output to $OUT/gpu_train_step.log. Each part
# has its own time limit, so a slow or failing one leaves the others' figures.
set -u
OUT=${OUT:-/tmp/gpu_train_step}
mkdir -p "$OUT"
LOG=$OUT/gpu_train_step.log
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TORCH_EXTENSIONS_DIR=/tmp/torch_extensions TORCH_CUDA_ARCH_LIST=9.0  # GPU.md: not "9.0a"
BATCH=${BATCH:-16}
PRESET=${PRESET:-paper}  # tiny: a dry run of this script on the CPU
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"

part() {  # part NAME SECONDS ARGS...: one train_step.py run, report in $OUT/NAME.json
    local name=$1 seconds=$2
    shift 2
    echo "== $name: $* ($(date +%T))" | tee -a "$LOG"
    timeout "$seconds" python3 benchmarks/train_step.py --preset "$PRESET" --out "$OUT/$name.json" \
        "$@" >>"$LOG" 2>&1 || echo "== $name exited with $?" | tee -a "$LOG"
    [ -f "$OUT/$name.json" ] && cat "$OUT/$name.json"
}

# The headline: our step as training runs it (plain torch and the DeepSpeed engine), no
# activation checkpointing, vs the baseline's three modes at the same batch.
part main 360 --batch "$BATCH" --checkpointing off --modes plain,ds \
    --baseline .gpu/baseline_vlm_step.py
# Levers, ours only: twice the batch; the paper preset's checkpointing; torch.compile.
part batch32 45 --batch 32 --checkpointing off --modes plain
part checkpointing 45 --batch "$BATCH" --checkpointing on --modes plain
part compile 100 --batch "$BATCH" --checkpointing off --modes plain --compile
