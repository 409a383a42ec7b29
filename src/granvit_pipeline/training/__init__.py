"""Model-agnostic DeepSpeed training engine (no Kedro imports).

- `config`: `TrainConfig` (pydantic), `resolve_deepspeed_config` (fills the JSON's "auto")
- `recipes`: the `Recipe` protocol; `toy`: the toy recipe (tests, smoke runs)
- `engine`: `train(cfg, callbacks) -> TrainResult`, in-process, collective over ranks
- `context`: `RunContext`, what the loop needs of a run
- `loop`: the step loop (grad accumulation, metrics, NaN/OOM checks, checkpoints)
- `checkpoint`: step-named checkpoints, exact resume, compatibility checks
- `run_dir`: every file name in a run's output directory, and the metrics reader
- `callbacks`: `TrainCallback`, `TrainResult`, the training errors and exit statuses
- `launcher`: `launch(cfg) -> TrainResult` in child process(es) running `worker.entry`
- `granvit/`: the GranViT recipe, its data, stage parameters and stage runner

This package imports nothing heavy at import time; import the submodules you need.
"""
