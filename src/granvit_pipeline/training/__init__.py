"""Model-agnostic DeepSpeed training engine (no Kedro imports).

- `config`: `TrainConfig` (pydantic), `resolve_deepspeed_config` (fills the JSON's "auto")
- `recipes`: the `Recipe` protocol, the registry (`load_recipe`), the `toy` recipe
- `engine`: `train(cfg, callbacks) -> TrainResult`, in-process, collective over ranks
- `loop`: the step loop (grad accumulation, metrics, NaN/OOM checks, checkpoints)
- `checkpoint`: step-named checkpoints, exact resume, compatibility checks
- `callbacks`: `TrainCallback`, `TrainResult`, the training errors
- `launcher`: `launch(cfg) -> TrainResult` in child process(es), `deepspeed` launcher for > 1
- `entry`: `python -m granvit_pipeline.training.entry --run-config ...` (what `launch` runs)

This package imports nothing heavy at import time; import the submodules you need.
"""
