"""`launch(cfg)`: run training in child processes and read back what they wrote.

Writes `<output_dir>/run_config.json`, starts `worker.entry` (one process directly, several
through the `deepspeed` launcher), streams the children's output into this process's logger and
into `<output_dir>/train.log`, then returns the `TrainResult` from `result.json`. Use
`engine.train` instead when callbacks must run in the calling process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from deepspeed.accelerator import get_accelerator

from granvit_pipeline.training.callbacks import (
    EXIT_STOPPED,
    TrainingError,
    TrainingStopped,
    TrainResult,
)
from granvit_pipeline.training.config import (
    TrainConfig,
    load_template,
    resolve_deepspeed_config,
    run_config_dict,
    write_run_config,
)
from granvit_pipeline.training.engine import free_port
from granvit_pipeline.training.run_dir import RunDir

logger = logging.getLogger(__name__)
child_logger = logging.getLogger("granvit_pipeline.training.child")

# Named, not imported: the worker composes training with tracking and tuning, above this package.
ENTRY_MODULE = "granvit_pipeline.worker.entry"
TAIL_LINES = 40


class TrainingProcessError(TrainingError):
    """A training process exited with a non-zero status; carries the tail of its log."""

    def __init__(self, returncode: int, command: list[str], tail: list[str]):
        self.returncode, self.command, self.tail = returncode, command, tail
        super().__init__(
            f"training exited with status {returncode}: {' '.join(command)}\n"
            + "--- last lines of its log ---\n"
            + "\n".join(tail)
        )


def build_command(cfg: TrainConfig, run_config: Path, port: int) -> list[str]:
    """The command that starts every training process of `cfg`."""
    entry_args = ["--run-config", str(run_config)]
    if cfg.num_processes == 1 and cfg.hostfile is None:
        return [sys.executable, "-u", "-m", ENTRY_MODULE, *entry_args]
    runner = [sys.executable, "-u", "-m", "deepspeed.launcher.runner", "--master_port", str(port)]
    if cfg.hostfile is not None:  # several nodes: the hostfile says where and how many
        runner += ["--hostfile", str(cfg.hostfile)]
    else:  # one node; on a CPU-only machine --num_gpus N still starts N (gloo) processes
        runner += ["--num_gpus", str(cfg.num_processes)]
    return [*runner, "--module", ENTRY_MODULE, *entry_args]


def child_env(cfg: TrainConfig, port: int, env: Mapping[str, str] | None) -> dict[str, str]:
    merged = {**os.environ, **(env or {})}
    merged.setdefault("TORCH_EXTENSIONS_DIR", str(Path.cwd() / ".torch_extensions"))
    merged["PYTHONUNBUFFERED"] = "1"
    if cfg.num_processes == 1 and cfg.hostfile is None:
        merged.update(
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
    else:  # the deepspeed launcher sets these per process; stale values would confuse it
        for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            merged.pop(key, None)
    return merged


def stream_process(
    command: list[str], env: dict[str, str], log_path: Path
) -> tuple[int, list[str]]:
    """Run `command`, forwarding each output line to the logger and the log file."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with (
        log_path.open("a") as log_file,
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        for raw in proc.stdout:  # text mode: "\r" (tqdm) also ends a line
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            log_file.write(line + "\n")
            child_logger.info("%s", line)
        returncode = proc.wait()
    return returncode, list(tail)


def launch(cfg: TrainConfig, env: Mapping[str, str] | None = None) -> TrainResult:
    """Train `cfg` in child process(es); returns the result they wrote.

    Raises `TrainingStopped` when the run exited at `stop_after_step`, and
    `TrainingProcessError` (with the log tail) for any other non-zero exit.
    """
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    device = get_accelerator().device_name()
    ds_config = resolve_deepspeed_config(
        load_template(cfg.deepspeed_config), cfg, cfg.num_processes, device
    )
    run_dir = RunDir(cfg.output_dir)
    run_config_path = run_dir.run_config
    write_run_config(run_config_path, run_config_dict(cfg, ds_config, cfg.num_processes, device))
    port = free_port()
    command = build_command(cfg, run_config_path, port)
    logger.info("launching %d training process(es): %s", cfg.num_processes, " ".join(command))
    returncode, tail = stream_process(command, child_env(cfg, port, env), run_dir.train_log)
    if returncode == EXIT_STOPPED:
        raise TrainingStopped(
            f"training stopped at step {cfg.stop_after_step} (stop_after_step)\n" + "\n".join(tail)
        )
    if returncode != 0:
        raise TrainingProcessError(returncode, command, tail)
    if not run_dir.done.is_file():
        raise TrainingProcessError(returncode, command, [*tail, f"(no {run_dir.done} written)"])
    return TrainResult.read(run_dir.result)
