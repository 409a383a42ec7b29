#!/usr/bin/env bash
# The stage-1 step on one GPU, beside the shared baseline, in one device call (../shared/GPU.md).
#
# `make gpu-bundle` here first: it fills the git-ignored .whl/ (DeepSpeed and the project's pins
# that the GPU image lacks or has in other versions) and .gpu/ (the shared baseline). Then run
# this from the repo root on the GPU machine with .whl and .gpu carried (device run: timeout_s
# 590; the parts share a 560 s budget, in order of priority: the baseline's three models are
# built on the CPU, 43 s each on 2 cores here).
# Writes a JSON report per train_step part to $OUT and all output to $OUT/gpu_train_step.log.
# Each part has its own time limit, so a slow or failing one leaves the others' figures.
set -u
OUT=${OUT:-/tmp/gpu_train_step}
mkdir -p "$OUT"
LOG=$OUT/gpu_train_step.log
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# One DeepSpeed op cache for the benchmark and the tests (their conftest uses this folder).
export TORCH_EXTENSIONS_DIR=$PWD/.torch_extensions TORCH_CUDA_ARCH_LIST=9.0  # GPU.md: not 9.0a
BATCH=${BATCH:-16}
PRESET=${PRESET:-paper}  # tiny: a dry run of this script on the CPU
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"

DEADLINE=$((SECONDS + ${BUDGET:-560}))  # all parts end by then, whatever their own limits

limit() {  # limit SECONDS: the smaller of SECONDS and what is left before the deadline
    local left=$((DEADLINE - SECONDS))
    echo $((left < $1 ? left : $1))
}

part() {  # part NAME SECONDS COMMAND...: COMMAND within SECONDS and the deadline, into the log
    local name=$1 seconds
    seconds=$(limit "$2")
    shift 2
    if [ "$seconds" -lt 20 ]; then echo "== $name skipped: out of time" | tee -a "$LOG"; return; fi
    echo "== $name (${seconds} s, $(date +%T))" | tee -a "$LOG"
    timeout "$seconds" "$@" >>"$LOG" 2>&1 || echo "== $name exited with $?" | tee -a "$LOG"
    [ -f "$OUT/$name.json" ] && cat "$OUT/$name.json"
}

step() {  # step NAME SECONDS ARGS...: one train_step.py run, report in $OUT/NAME.json
    part "$1" "$2" python3 benchmarks/train_step.py --preset "$PRESET" --out "$OUT/$1.json" "${@:3}"
}

# The headline: our step as training runs it (plain torch and the DeepSpeed engine), no
# activation checkpointing, vs the baseline's three modes at the same batch.
step main 380 --batch "$BATCH" --checkpointing off --modes plain,ds \
    --baseline .gpu/baseline_vlm_step.py
# The training test that runs on the GPU when there is one: stage 1 in bf16 (FusedAdam, NCCL)
# under ZeRO-2 and ZeRO-3, fp32 EMA teacher, frozen LLM. The top conftest needs Kedro, which the
# GPU image lacks; the training conftest does not.
part tests 90 python3 -m pytest -q -p no:cacheprovider -k bf16 \
    tests/training/test_granvit_training.py --confcutdir=tests/training
# Levers, ours only: ZeRO-0 (one GPU has nothing to partition); twice the batch; the paper
# preset's checkpointing; torch.compile.
step zero0 60 --batch "$BATCH" --checkpointing off --modes ds0
step batch32 40 --batch 32 --checkpointing off --modes plain
step checkpointing 40 --batch "$BATCH" --checkpointing on --modes plain
step compile 70 --batch "$BATCH" --checkpointing off --modes plain --compile
