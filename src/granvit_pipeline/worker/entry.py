"""Training entry point: run `train()` from a resolved run config, in every launched process.

Single process (what `launcher.launch` runs for num_processes == 1):

    RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \\
    TORCH_EXTENSIONS_DIR=.torch_extensions \\
        python -m granvit_pipeline.worker.entry --run-config <output_dir>/run_config.json

Several processes on one machine, through the DeepSpeed launcher (GPUs, or CPU processes with
the gloo backend: `--num_gpus N` starts N processes even where there is no GPU):

    TORCH_EXTENSIONS_DIR=.torch_extensions deepspeed --num_gpus 2 --master_port 29500 \\
        --module granvit_pipeline.worker.entry --run-config <output_dir>/run_config.json

Several nodes: `deepspeed --hostfile hostfile --master_port 29500 --module ...` (same arguments;
the hostfile lists `host slots=N`; the output_dir must be on a shared filesystem).

The launcher passes `--local_rank`; the process reads RANK/LOCAL_RANK/WORLD_SIZE from the env.
With MLFLOW_RUN_ID and MLFLOW_TRACKING_URI set (the Kedro tracking hook sets them for the node's
run), rank 0 streams its step metrics to that MLflow run (`tracking.MlflowCallback`).
With GRANVIT_OPTUNA_TRIAL set (the tuning node sets it), rank 0 reports intermediate values to
that Optuna trial and stops when it is pruned (`tuning.PruningCallback`).
Exit codes: 0 done, else one of `training.callbacks.EXIT_*`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from granvit_pipeline.training.callbacks import (
    EXIT_ERROR,
    EXIT_STOPPED,
    StopRequested,
    TrainingError,
    TrainingStopped,
)
from granvit_pipeline.training.checkpoint import CheckpointError
from granvit_pipeline.training.config import read_run_config
from granvit_pipeline.training.engine import train
from granvit_pipeline.tuning.pruning import PruningCallback

if TYPE_CHECKING:
    from granvit_pipeline.tracking.callback import MlflowCallback

logger = logging.getLogger("granvit_pipeline.training")


def configure_logging(rank: int) -> None:
    """Rank 0 logs at INFO; other ranks only warnings and errors."""
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(
        level=level, format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # its INFO is a wall of config


def limit_cpu_threads() -> None:
    """On the CPU, share the cores among the processes of this node instead of oversubscribing."""
    # LOCAL_SIZE: deepspeed's launcher; LOCAL_WORLD_SIZE: torchrun.
    env = os.environ
    local_size = int(
        env.get("LOCAL_SIZE") or env.get("LOCAL_WORLD_SIZE") or env.get("WORLD_SIZE", "1")
    )
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_size)))


def tracking_callbacks(rank: int) -> list[MlflowCallback]:
    """Rank 0's MLflow callback when the environment names a run, else none."""
    if rank != 0 or not (os.environ.get("MLFLOW_RUN_ID") and os.environ.get("MLFLOW_TRACKING_URI")):
        return []
    from granvit_pipeline.tracking.callback import MlflowCallback  # imports mlflow (seconds)

    try:
        return [MlflowCallback.from_env()]
    except Exception as err:  # tracking must never stop training
        logger.warning("MLflow tracking off for this run: %s", err)
        return []


def pruning_callbacks(rank: int) -> list[PruningCallback]:
    """Rank 0's Optuna pruning callback when the environment names a trial, else none."""
    callback = PruningCallback.from_env() if rank == 0 else None
    return [] if callback is None else [callback]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-config", type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=None, help="set by deepspeed; unused")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    configure_logging(rank)
    limit_cpu_threads()
    cfg = read_run_config(args.run_config)
    callbacks = [*tracking_callbacks(rank), *pruning_callbacks(rank)]
    try:
        result = train(cfg, callbacks)
    except StopRequested as err:  # a pruned trial (every rank: rank 0 decided)
        logger.log(logging.INFO if rank == 0 else logging.WARNING, "rank %d: %s", rank, err)
        return err.exit_code
    except TrainingStopped as err:
        logger.warning("%s", err)
        return EXIT_STOPPED
    except (TrainingError, CheckpointError) as err:
        logger.error("training failed: %s", err)
        return EXIT_ERROR
    finally:
        for callback in callbacks:
            callback.close()  # a failed run's last metrics too
    if rank == 0:
        logger.info("training done: step %d, export %s", result.final_step, result.export_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
