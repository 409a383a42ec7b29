"""What a training run reports: the callback interface, the result record, and the errors.

Callbacks run on rank 0 only (the one process that logs and writes outputs); MLflow and Optuna
reporting plug in here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

# Exit statuses of a training process (``worker.entry``), read back by ``training.launcher``.
EXIT_ERROR = 1  # a training error (logged)
EXIT_STOPPED = 75  # stopped by ``stop_after_step``
EXIT_PRUNED = 76  # a pruned Optuna trial (``tuning.pruning``)


class TrainCallback(Protocol):
    """Observer of a training run (rank 0). Every method is called; implement what you need."""

    def on_train_start(self, run_config: dict[str, Any]) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """Summary of a finished run, also written to `<output_dir>/result.json`."""

    output_dir: str
    final_step: int  # last optimizer step taken (== cfg.steps)
    resumed_from_step: int | None  # step of the checkpoint this process resumed from
    final_loss: float | None  # loss of the last step this process ran (None: ran no steps)
    elapsed_s: float  # wall time of this process's training, setup included
    export_dir: str  # the final artifact
    metrics_path: str  # per-step metrics, one JSON object per line
    last_checkpoint: str | None
    world_size: int
    rank_weight_digests: list[str] = field(default_factory=list)  # sha256 of weights per rank

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        return cls(**json.loads(Path(path).read_text()))


class TrainingError(RuntimeError):
    """Training stopped on an error; no export and no DONE marker were written."""


class NonFiniteLossError(TrainingError):
    def __init__(self, step: int, losses: dict[str, float], ids_by_rank: list[list[Any]]):
        self.step, self.losses, self.ids_by_rank = step, losses, ids_by_rank
        ids = "; ".join(f"rank {r}: {ids}" for r, ids in enumerate(ids_by_rank))
        super().__init__(f"non-finite loss at step {step} ({losses}); batch ids: {ids}")


class TrainingOOMError(TrainingError):
    pass


class TrainingStopped(TrainingError):
    """`stop_after_step` was reached: the run exits as if killed (for resume tests, debugging)."""


class StopRequested(TrainingError):
    """A rank-0 callback stops the run after ``step``; nothing is exported.

    Raised by a callback's ``on_step`` on rank 0; the loop hands the decision to every rank
    (``loop.agree_on_stop``), so all ranks leave after the same step and the entry point exits
    with ``exit_code`` on each of them.
    """

    exit_code = EXIT_ERROR

    def __init__(self, step: int, message: str):
        self.step = step
        super().__init__(message)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA OOM, or a CPU allocator failure."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def out_of_memory_error(err: BaseException, step: int, micro_batch_size: int) -> TrainingOOMError:
    return TrainingOOMError(
        f"out of memory at step {step} with micro_batch_size={micro_batch_size}: lower "
        "micro_batch_size and raise grad_accum_steps to keep the global batch, or use a higher "
        f"zero_stage / bf16 ({type(err).__name__}: {str(err).splitlines()[0][:300]})"
    )
