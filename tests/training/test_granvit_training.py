"""GranViT stages through the real engine (DeepSpeed steps on the CPU, tiny preset).

One module fixture chains lm_warmup -> stage1 -> stage2 in-process; the resume test stops a
stage-1 child process. The 2-rank run through the `deepspeed` launcher is stage 1 of
tests/pipelines/test_train_pipelines.py (one launch serves both, each costs ~20 s of imports).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, SiglipVisionModel

from granvit_pipeline.model.export import load_full
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.training.callbacks import TrainingStopped
from granvit_pipeline.training.checkpoint import CheckpointError
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.engine import train
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.recipe import GranViTRecipe
from granvit_pipeline.training.granvit.smoke import write_demo_shards
from granvit_pipeline.training.launcher import launch

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED_CONF = REPO / "conf/base/deepspeed"
STAGE1_STEPS = 4


def stage_config(inputs: dict, out: Path, stage: str, init_from=None, **overrides) -> TrainConfig:
    """A small fp32 CPU run of one stage on the tiny preset (ZeRO-2 template)."""
    recipe_args = {
        "stage": stage,
        "preset": "tiny",
        "shards_dir": str(inputs["shards"]),
        "tokenizer_dir": str(inputs["tokenizer"]),
        "init_from": None if init_from is None else str(init_from),
        "shuffle_buffer": 8,
        **overrides.pop("recipe_args", {}),
    }
    values = {
        "recipe": GranViTRecipe,
        "steps": 2,
        "micro_batch_size": 4,
        "lr": 3e-3,
        "seed": 5,
        "precision": "fp32",
        "deepspeed_config": REPO / "conf/base/deepspeed/zero2_cpu.json",
        "output_dir": out,
        "log_every": 1,
        "recipe_args": recipe_args,
        **overrides,
    }
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("granvit_train_inputs")
    shards = write_demo_shards(root / "shards", n_images=24)
    fit_tokenizer(shards, "train", PromptTemplates(), 1024).save_pretrained(root / "tokenizer")
    return {"root": root, "shards": shards, "tokenizer": root / "tokenizer"}


@pytest.fixture(scope="module")
def chain(inputs) -> dict[str, Path]:
    """lm_warmup (2 steps) -> stage1 (4 steps, checkpoint every 2) -> stage2 (2 steps)."""
    root = inputs["root"]
    warm = train(stage_config(inputs, root / "lm_warmup", "lm_warmup"))
    s1_cfg = stage_config(
        inputs, root / "stage1", "stage1", warm.export_dir, steps=STAGE1_STEPS, checkpoint_every=2
    )
    s1 = train(s1_cfg)
    s2 = train(stage_config(inputs, root / "stage2", "stage2", s1.export_dir))
    return {"lm_warmup": Path(warm.export_dir), "stage1": Path(s1.export_dir),
            "stage2": Path(s2.export_dir), "stage1_out": root / "stage1"}  # fmt: skip


def weights(export: Path, part: str) -> dict[str, torch.Tensor]:
    files = {"encoder": "encoder/model.safetensors", "llm": "llm/model.safetensors"}
    files["projector"] = "projector.safetensors"
    return load_file(str(export / files[part]))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal up to float reordering. Attention key biases get a looser bound: softmax ignores
    them, so their gradient is rounding noise that Adam scales up to lr-sized steps (seen: 3e-4
    apart between ZeRO-2 and ZeRO-3 after 4 steps, every other tensor within 1e-5)."""
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        atol = 1e-3 if name.endswith("k_proj.bias") else 1e-6
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=atol, msg=name)


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").open()]


def teacher_at(out: Path, step: int) -> dict[str, torch.Tensor]:
    """The EMA teacher saved in a checkpoint (rank 0's model states; ZeRO-3 prefixes its name)."""
    (path,) = (out / "checkpoints" / f"step_{step:06d}").glob("*mp_rank_00_model_states.pt")
    return torch.load(path, weights_only=False)["recipe_state"]["teacher"]  # our own test output


@pytest.mark.slow
def test_stage1_trains_the_encoder_and_keeps_the_llm(chain):
    assert same(weights(chain["lm_warmup"], "llm"), weights(chain["stage1"], "llm"))
    assert not same(weights(chain["lm_warmup"], "encoder"), weights(chain["stage1"], "encoder"))
    assert not same(weights(chain["lm_warmup"], "projector"), weights(chain["stage1"], "projector"))


@pytest.mark.slow
def test_stage2_starts_from_stage1_and_keeps_the_encoder(chain):
    assert same(weights(chain["stage1"], "encoder"), weights(chain["stage2"], "encoder"))
    assert not same(weights(chain["stage1"], "llm"), weights(chain["stage2"], "llm"))
    assert not same(weights(chain["stage1"], "projector"), weights(chain["stage2"], "projector"))


@pytest.mark.slow
def test_ema_teacher_moves_and_is_checkpointed(chain):
    teacher = teacher_at(chain["stage1_out"], STAGE1_STEPS)
    start, student = weights(chain["lm_warmup"], "encoder"), weights(chain["stage1"], "encoder")
    assert teacher.keys() == start.keys()
    moved = [k for k in teacher if not torch.equal(teacher[k], start[k])]
    assert moved and not same(teacher, student)  # an EMA lags behind the student
    assert all(m["loss_distill"] > 0 for m in metrics(chain["stage1_out"]))


@pytest.mark.slow
def test_stage1_under_zero3_matches_zero2(chain, inputs, tmp_path):
    """ZeRO-3 partitions the encoder, so the EMA update and the distillation crops must gather
    it first: the same losses, weights and teacher as the chain's ZeRO-2 stage 1."""
    cfg = stage_config(
        inputs, tmp_path / "zero3", "stage1", chain["lm_warmup"], steps=STAGE1_STEPS,
        checkpoint_every=2, zero_stage=3, deepspeed_config=DEEPSPEED_CONF / "zero3.json",
    )  # fmt: skip
    linear = torch.nn.functional.linear
    result = train(cfg)
    assert torch.nn.functional.linear is linear  # ZeRO-3 patches it; train() puts it back
    ours, ref = metrics(cfg.output_dir), metrics(chain["stage1_out"])
    assert len(ours) == STAGE1_STEPS
    for mine, theirs in zip(ours, ref, strict=True):
        for key in ("loss", "loss_caption", "loss_distill"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
    for part in ("encoder", "projector", "llm"):
        close(weights(Path(result.export_dir), part), weights(chain["stage1"], part))
    close(teacher_at(cfg.output_dir, STAGE1_STEPS), teacher_at(chain["stage1_out"], STAGE1_STEPS))


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_stage1_in_bf16_keeps_an_fp32_teacher(inputs, tmp_path, zero_stage):
    """bf16 mixed precision, as on a GPU: DeepSpeed casts the student, the EMA teacher stays
    fp32 (also when stage 1 starts from a bf16 export), the frozen LLM stays bit-identical.
    Runs on the GPU when there is one (FusedAdam, NCCL; on a GPU machine:
    ``pytest tests/training/test_granvit_training.py -k bf16 --confcutdir=tests/training``,
    whose conftest needs no Kedro); on the CPU otherwise."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    template = {2: f"zero2_{'bf16' if device == 'cuda' else 'cpu'}.json", 3: "zero3.json"}
    common = {"precision": "bf16", "zero_stage": zero_stage}
    common["deepspeed_config"] = DEEPSPEED_CONF / template[zero_stage]
    warm = train(stage_config(inputs, tmp_path / "lm_warmup", "lm_warmup", **common))
    cfg = stage_config(
        inputs,
        tmp_path / "stage1",
        "stage1",
        warm.export_dir,
        steps=STAGE1_STEPS,
        checkpoint_every=2,
        **common,
    )
    result = train(cfg)
    run = json.loads((cfg.output_dir / "run_config.json").read_text())
    assert (run["device"], run["precision"]) == (device, "bf16")
    steps = metrics(cfg.output_dir)
    assert len(steps) == STAGE1_STEPS
    assert all(math.isfinite(m["loss"]) and m["loss_distill"] > 0 for m in steps)
    start, export = Path(warm.export_dir), Path(result.export_dir)
    assert same(weights(start, "llm"), weights(export, "llm"))  # frozen, bf16 both times
    assert not same(weights(start, "encoder"), weights(export, "encoder"))
    teacher, first = teacher_at(cfg.output_dir, STAGE1_STEPS), weights(start, "encoder")
    assert all(value.dtype == torch.float32 for value in teacher.values())
    assert any(not torch.equal(teacher[k], first[k].float()) for k in first)


@pytest.mark.slow
def test_exported_encoder_loads_with_plain_transformers(chain, inputs):
    encoder = AutoModel.from_pretrained(chain["stage1"], local_files_only=True)
    assert isinstance(encoder, SiglipVisionModel)
    model, tokenizer = load_full(chain["stage1"])
    assert tokenizer is not None and len(tokenizer) == model.config.llm.vocab_size
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    model.eval(), encoder.eval()
    with torch.no_grad():
        ours = model.encode_image(pixels)
        theirs = encoder(pixel_values=pixels).last_hidden_state
    assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_resume_with_other_model_sizes_is_a_clear_error(inputs, tmp_path):
    cfg = stage_config(inputs, tmp_path / "run", "global_only", checkpoint_every=1, steps=1)
    train(cfg)
    bigger = cfg.recipe_args.model_copy(update={"overrides": {"vision": {"num_layers": 3}}})
    with pytest.raises(CheckpointError, match=r"does not match this run: parameters: .*layers\.2"):
        train(cfg.model_copy(update={"recipe_args": bigger, "steps": 2}))


@pytest.mark.slow
def test_stage1_killed_then_resumed_equals_uninterrupted(chain, inputs, tmp_path):
    """A: 4 steps in one go. B: a child process that exits after step 3 (its checkpoint is at
    step 2), then a resumed run. 2 DataLoader workers each; results must be bitwise equal."""
    common = {"steps": 4, "checkpoint_every": 2, "warmup_steps": 1}
    workers = {"recipe_args": {"num_workers": 2}}
    a = stage_config(inputs, tmp_path / "a", "stage1", chain["lm_warmup"], **common, **workers)
    train(a)
    workers = {"recipe_args": {"num_workers": 2}}
    b = stage_config(
        inputs, tmp_path / "b", "stage1", chain["lm_warmup"], stop_after_step=3, **common, **workers
    )
    # Float sums depend on the thread count: the child must use the one of this process
    # (runs A and the resumed half of B), whatever earlier tests left it at.
    with pytest.raises(TrainingStopped):
        launch(b, env={"OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert [p.name for p in (b.output_dir / "checkpoints").glob("step_*")] == ["step_000002"]
    # The resumed half runs in this process (a second child would cost ~20 s of imports).
    result = train(b.model_copy(update={"stop_after_step": None}))
    assert result.resumed_from_step == 2 and result.final_step == 4

    def losses(out: Path) -> list[float]:
        return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").open()]

    assert len(losses(a.output_dir)) == 4 and losses(b.output_dir) == losses(a.output_dir)
    for part in ("encoder", "projector", "llm"):
        assert same(weights(a.output_dir / "export", part), weights(b.output_dir / "export", part))
    teachers = [
        torch.load(o / "checkpoints/step_000004/mp_rank_00_model_states.pt", weights_only=False)
        for o in (a.output_dir, b.output_dir)
    ]
    assert same(*(t["recipe_state"]["teacher"] for t in teachers))
