"""The GranViT recipe without the engine: arguments, data and exact resume, losses, init errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from granvit_pipeline.model.export import export_full
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tokenizer import load_tokenizer
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.recipe import GranViTArgs, GranViTRecipe
from granvit_pipeline.training.granvit.smoke import write_demo_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """24 demo images in 3 shards, a tokenizer fitted on them, and a random tiny export."""
    root = tmp_path_factory.mktemp("granvit_inputs")
    shards = write_demo_shards(root / "shards", n_images=24)
    tokenizer = fit_tokenizer(shards, "train", PromptTemplates(), vocab_size=1024)
    tokenizer.save_pretrained(root / "tokenizer")
    args = GranViTArgs(
        stage="lm_warmup", preset="tiny", shards_dir=shards, tokenizer_dir=root / "tokenizer"
    )
    torch.manual_seed(0)
    recipe = GranViTRecipe()
    model = recipe.build_model(config(root, args.model_dump()))
    export_full(model, root / "export", recipe.tokenizer)
    return {"shards": shards, "tokenizer": root / "tokenizer", "export": root / "export"}


def config(out: Path, recipe_args: dict, **overrides) -> TrainConfig:
    values = {
        "recipe": GranViTRecipe,
        "steps": 2,
        "micro_batch_size": 4,
        "lr": 1e-3,
        "deepspeed_config": REPO / "conf/base/deepspeed/zero2_cpu.json",
        "output_dir": out / "run",
        "recipe_args": recipe_args,
        **overrides,
    }
    return TrainConfig(**values)


def recipe_args(inputs: dict[str, Path], stage: str, **extra) -> dict:
    args = {"stage": stage, "preset": "tiny", "shards_dir": inputs["shards"]}
    args |= {"tokenizer_dir": inputs["tokenizer"], **extra}
    if stage in ("stage1", "stage2"):
        args.setdefault("init_from", inputs["export"])
    return {k: str(v) if isinstance(v, Path) else v for k, v in args.items()}


def built(inputs, tmp_path, stage: str, **extra) -> tuple[GranViTRecipe, GranViT, TrainConfig]:
    cfg = config(tmp_path, recipe_args(inputs, stage, **extra))
    recipe = GranViTRecipe()
    torch.manual_seed(0)
    return recipe, recipe.build_model(cfg), cfg


def test_arguments_are_checked(inputs) -> None:
    base = recipe_args(inputs, "lm_warmup")
    with pytest.raises(ValidationError, match="set init_from"):
        GranViTArgs.model_validate({**base, "stage": "stage1"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        GranViTArgs.model_validate({**base, "lamda_distill": 1.0})
    with pytest.raises(ValidationError, match="mixes only"):
        GranViTArgs.model_validate({**base, "stage": "global_only", "tasks": {"bbox2caption": 1}})
    with pytest.raises(ValidationError, match="unknown GranViT preset"):
        GranViTArgs.model_validate({**base, "preset": "huge"})
    assert GranViTArgs.model_validate({**base, "stage": "stage2", "init_from": "x"}).task_weights()
    with pytest.raises(ValidationError, match="coordinate_init initialises a random LLM"):
        GranViTArgs.model_validate({**base, "stage": "stage2", "init_from": "x",
                                    "coordinate_init": 0.1})  # fmt: skip
    with pytest.raises(ValidationError, match="loss_on_prompts is a warm-up setting"):
        GranViTArgs.model_validate({**base, "stage": "stage2", "init_from": "x",
                                    "loss_on_prompts": True})  # fmt: skip
    with pytest.raises(ValidationError, match="feature_cache_images needs a frozen encoder"):
        GranViTArgs.model_validate({**base, "feature_cache_images": 8})
    missing = GranViTArgs.model_validate({**base, "tokenizer_dir": "/nonexistent"})
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        missing.check_inputs()


def test_recipe_applies_coordinate_init_and_packing(inputs, tmp_path) -> None:
    recipe, plain, _ = built(inputs, tmp_path / "plain", "lm_warmup")
    recipe, model, cfg = built(inputs, tmp_path / "coded", "lm_warmup", coordinate_init=0.1)
    ids = recipe.tokenizer.convert_tokens_to_ids(["0.41", "0.42"])
    for m, similar in ((plain, False), (model, True)):
        a, b = m.llm.get_input_embeddings().weight.detach()[ids]
        assert (float(torch.cosine_similarity(a, b, dim=0)) > 0.5) is similar
    assert recipe.make_data(cfg, 0, 1).builder.collator.pack == 1
    recipe, _, cfg = built(inputs, tmp_path / "packed", "stage2", pack=3)
    assert recipe.make_data(cfg, 0, 1).builder.collator.pack == 3


def test_warm_up_loss_on_prompts_labels_every_text_token(inputs, tmp_path) -> None:
    plain, _, cfg = built(inputs, tmp_path / "plain", "lm_warmup")
    full, _, full_cfg = built(inputs, tmp_path / "full", "lm_warmup", loss_on_prompts=True)
    answers = next(iter(plain.make_data(cfg, 0, 1)))
    every = next(iter(full.make_data(full_cfg, 0, 1)))
    assert torch.equal(every["input_ids"], answers["input_ids"])  # same rows, other labels
    real = every["attention_mask"] == 1
    assert torch.equal(every["labels"][real], every["input_ids"][real])
    assert (every["labels"][~real] == -100).all()
    labelled = answers["labels"] != -100
    assert labelled.sum() < real.sum()  # answers only: the prompts are not labelled
    assert torch.equal(answers["labels"][labelled], every["labels"][labelled])


def test_stage2_feature_cache_fills_and_gives_the_uncached_loss(inputs, tmp_path) -> None:
    plain, model, _ = built(inputs, tmp_path / "plain", "stage2")
    cached, _, cfg = built(inputs, tmp_path / "cached", "stage2", feature_cache_images=64)
    assert plain.feature_cache is None and cached.feature_cache is not None
    batch = next(iter(cached.make_data(cfg, 0, 1)))
    expected = plain.compute_loss(model, batch, 0)["loss"]
    torch.testing.assert_close(cached.compute_loss(model, batch, 0)["loss"], expected)
    assert len(cached.feature_cache) == len(set(batch["image_ids"]))
    zero3 = config(tmp_path / "z3", cfg.recipe_args, zero_stage=3)
    with pytest.raises(ValueError, match="ZeRO-3 has not gathered the encoder"):
        GranViTRecipe().build_model(zero3)


@pytest.mark.parametrize(
    ("stage", "trained", "frozen"),
    [("lm_warmup", {"llm"}, {"vision", "projector"}), ("stage1", {"vision", "projector"}, {"llm"})],
)
def test_forward_backward_reaches_only_the_stage_parts(inputs, tmp_path, stage, trained, frozen):
    recipe, model, cfg = built(inputs, tmp_path, stage)
    batch = next(recipe.make_data(cfg, 0, 1))
    assert ("pixel_values" in batch) == (stage != "lm_warmup")
    losses = recipe.compute_loss(model, batch, 1)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["loss_caption"] > 0
    if stage == "stage1":  # the teacher starts as the student; crops differ from RoIs
        assert losses["loss_distill"] > 0
    for part in trained:
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), part
    for part in frozen:
        assert all(p.grad is None for p in getattr(model, part).parameters()), part
    params = recipe.trainable_parameters(model)
    assert sum(p.numel() for p in params) == sum(
        p.numel() for n in trained for p in getattr(model, n).parameters()
    )
    answer = int((batch["labels"] != -100).sum())
    images = batch["pixel_values"].shape[0] * 16 if "pixel_values" in batch else 0  # 4x4 grid
    assert recipe.count_tokens(batch) == answer + images


def test_ema_teacher_follows_the_student_and_round_trips(inputs, tmp_path):
    recipe, model, _ = built(inputs, tmp_path, "stage1")
    before = {k: v.clone() for k, v in recipe.extra_state()["teacher"].items()}
    with torch.no_grad():
        for p in model.vision.parameters():
            p.add_(1.0)
    recipe.after_step(model, 1)
    after = recipe.extra_state()["teacher"]
    name = "post_layernorm.weight"
    torch.testing.assert_close(after[name], before[name] + 0.1)  # (1 - alpha) * 1.0
    fresh, _, _ = built(inputs, tmp_path, "stage1")
    fresh.load_extra_state({"teacher": after})
    assert all(torch.equal(v, after[k]) for k, v in fresh.extra_state()["teacher"].items())
    no_distill, _, _ = built(inputs, tmp_path, "stage1", lambda_distill=0.0)
    assert no_distill.extra_state() == {}
    with pytest.raises(ValueError, match="has none"):
        no_distill.load_extra_state({"teacher": after})


def _take(data, n: int) -> list[dict]:
    return [next(data) for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 2])
def test_data_resumes_exactly_where_it_stopped(inputs, tmp_path, workers):
    """12 batches of 4 cover 2 passes over the 24 images; resume at batch 5 gives batches 5..11."""
    recipe, _, cfg = built(inputs, tmp_path, "stage1", num_workers=workers, shuffle_buffer=8)
    reference = _take(recipe.make_data(cfg, 0, 1), 12)
    resumed = recipe.make_data(cfg, 0, 1)
    resumed.load_state_dict({"position": 5})
    again = _take(resumed, 7)
    assert resumed.state_dict() == {"position": 12}
    for ref, got in zip(reference[5:], again, strict=True):
        assert ref["image_ids"] == got["image_ids"] and ref["prompts"] == got["prompts"]
        assert torch.equal(ref["input_ids"], got["input_ids"])
        assert torch.equal(ref["pixel_values"], got["pixel_values"])
    # An image seen again draws its task/region anew (seeded by the batch index).
    seen: dict[str, set[str]] = {}
    for batch in reference:
        for image, prompt in zip(batch["image_ids"], batch["prompts"], strict=True):
            seen.setdefault(image, set()).add(prompt)
    assert any(len(prompts) > 1 for prompts in seen.values())


def test_init_from_errors_are_clear(inputs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"granvit\.json"):
        built(inputs, tmp_path, "stage1", init_from=inputs["shards"])
    with pytest.raises(ValueError, match=r"different model.*vision.num_layers: 2 vs 3"):
        built(inputs, tmp_path, "stage2", overrides={"vision": {"num_layers": 3}})
    broken = tmp_path / "broken"
    shutil.copytree(inputs["export"], broken)
    (broken / "llm" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"llm weights dir .* has no config.json"):
        built(inputs, tmp_path, "stage1", init_from=broken)
    other = load_tokenizer(inputs["tokenizer"])
    other.add_tokens(["zebra"])
    other.save_pretrained(tmp_path / "other_tokenizer")
    with pytest.raises(ValueError, match="another tokenizer"):
        built(inputs, tmp_path, "stage1", tokenizer_dir=tmp_path / "other_tokenizer")


def test_tokenizer_knows_every_training_text(inputs, tmp_path):
    recipe, _, cfg = built(inputs, tmp_path, "lm_warmup")
    unk = recipe.tokenizer.unk_token_id
    for batch in _take(recipe.make_data(cfg, 0, 1), 6):
        assert not (batch["input_ids"] == unk).any()
