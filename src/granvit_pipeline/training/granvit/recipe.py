"""The GranViT recipe for the training engine: one class for all four stages (no Kedro).

Use it as ``TrainConfig(recipe=GranViTRecipe, recipe_args={...})`` (``recipe_args`` are
:class:`GranViTArgs`); e.g. one stage-1 run on the CPU, in-process::

    from granvit_pipeline.training.engine import train
    train(TrainConfig(recipe=GranViTRecipe, steps=100, micro_batch_size=16, lr=1e-3,
                      deepspeed_config="conf/base/deepspeed/zero2_cpu.json",
                      output_dir="data/06_models/stage1",
                      recipe_args={"stage": "stage1", "preset": "demo",
                                   "shards_dir": "data/05_model_input/shards",
                                   "tokenizer_dir": "data/06_models/tokenizer",
                                   "init_from": "data/06_models/lm_warmup/export"}))

Stages (DESIGN.md section 2): what each trains, mixes and starts from is the stage table
``model.stages.STAGES``. ``lm_warmup`` trains the randomly initialised LLM on text, so that
stage 1's frozen LLM is a language model and not noise; stage 1 adds self-distillation against
an EMA teacher (``lambda_distill``; 0 turns it off).

The export (every stage) is one folder that is both :func:`~granvit_pipeline.model.load_full`'s
input (``encoder/``, ``llm/``, ``projector.safetensors``, ``granvit.json``, ``tokenizer/``) and a
Hugging Face encoder (``config.json`` + ``model.safetensors`` at its top, so
``transformers.AutoModel.from_pretrained(export_dir)`` loads a ``SiglipVisionModel``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from granvit_pipeline.model.config import GranViTConfig, fit_vocab, get_preset
from granvit_pipeline.model.data import Collator
from granvit_pipeline.model.distill import LAMBDA_DISTILL, DistillConfig, EMATeacher
from granvit_pipeline.model.export import CONFIG_FILE, export_encoder, export_full, load_full
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.objectives import FeatureCache, stage_loss
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.stages import Stage, StageSpec, stage_spec
from granvit_pipeline.model.tasks import Task
from granvit_pipeline.model.tokenizer import coordinate_token_values, load_tokenizer
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit.data import BatchBuilder, ShardBatches, count_batch_tokens

logger = logging.getLogger(__name__)


class GranViTArgs(BaseModel):
    """``recipe_args`` of the GranViT recipe; validated once (a typo is an error)."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    preset: str = "demo"  # model.config preset name
    overrides: dict[str, Any] = Field(default_factory=dict)  # merged into the preset
    shards_dir: Path  # shard set (manifest.json + tars)
    split: Literal["train", "val", "test"] = "train"
    tokenizer_dir: Path  # save_pretrained folder of train_tokenizer's output
    init_from: Path | None = None  # export/ of the previous stage (load_full)
    tasks: dict[Task, float] | None = None  # mixing weights; None = every allowed task, 1 each
    prompts: PromptTemplates = Field(default_factory=PromptTemplates)
    box_precision: int = Field(default=2, ge=1)  # decimals of box coordinates in text
    max_length: int | None = Field(default=None, gt=0)  # text tokens per row (None: no cut)
    # Region examples per row (Collator pack); 1 = one prompt -> answer per image
    pack: int = Field(default=1, ge=1)
    # Random LLM only (lm_warmup): amplitude of the smooth coordinate-embedding code
    # (GranViT.init_coordinate_embeddings); 0 = plain random embeddings
    coordinate_init: float = Field(default=0.0, ge=0)
    # lm_warmup only: LM loss on every text token (prompts too), not only on the answers
    loss_on_prompts: bool = False
    # Stage 2 only: frozen-encoder features kept per image (model.objectives.FeatureCache),
    # at most this many images; 0 = encode every batch
    feature_cache_images: int = Field(default=0, ge=0)
    lambda_distill: float = Field(default=LAMBDA_DISTILL, ge=0)  # stage 1 only; 0: off
    distill: DistillConfig = Field(default_factory=DistillConfig)  # ema_alpha, layer, RoI size
    shuffle_buffer: int = Field(default=256, ge=0)  # samples; 0 = shard order
    num_workers: int = Field(default=0, ge=0)  # DataLoader worker processes per rank

    @property
    def spec(self) -> StageSpec:
        """This stage's rules (``model.stages.STAGES``)."""
        return stage_spec(self.stage)

    @model_validator(mode="after")
    def _check(self) -> GranViTArgs:
        spec = self.spec
        if spec.continues and self.init_from is None:
            raise ValueError(
                f"stage {self.stage} continues a previous stage: set init_from to that stage's "
                "export folder (lm_warmup's for stage1, stage1's for stage2)"
            )
        wrong = sorted(set(self.task_weights()) - set(spec.tasks))
        if wrong:
            raise ValueError(f"stage {self.stage} mixes only {spec.tasks}; got tasks {wrong}")
        if self.loss_on_prompts and not spec.text_only:
            raise ValueError(
                f"loss_on_prompts is a warm-up setting (lm_warmup), not for stage {self.stage}"
            )
        if self.feature_cache_images and (spec.text_only or "vision" in spec.trains):
            raise ValueError(
                f"feature_cache_images needs a frozen encoder (stage2), not stage {self.stage}"
            )
        config = self.granvit_config()  # an unknown preset or a bad override fails here
        if self.coordinate_init > 0 and (self.init_from or config.llm_weights_dir):
            raise ValueError(
                "coordinate_init initialises a random LLM: it cannot apply with init_from or "
                "llm_weights_dir (set it on lm_warmup of a preset without LLM weights)"
            )
        return self

    def task_weights(self) -> dict[str, float]:
        return dict(self.tasks) if self.tasks is not None else dict.fromkeys(self.spec.tasks, 1.0)

    def granvit_config(self) -> GranViTConfig:
        return get_preset(self.preset, **self.overrides)

    def check_inputs(self) -> None:
        """Raise a clear error for a missing shard set, tokenizer or ``init_from`` export."""
        if not (self.shards_dir / "manifest.json").is_file():
            raise FileNotFoundError(f"shards_dir {self.shards_dir} has no manifest.json")
        if not (self.tokenizer_dir / "tokenizer.json").is_file():
            raise FileNotFoundError(f"tokenizer_dir {self.tokenizer_dir} has no tokenizer.json")
        if self.init_from is not None and not (self.init_from / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"init_from {self.init_from} has no {CONFIG_FILE}: expected the export folder "
                "of a previous GranViT stage (written by export_full)"
            )


def _architecture_diff(loaded: GranViTConfig, wanted: GranViTConfig) -> list[str]:
    diffs = []
    for part in ("vision", "llm"):
        have, want = getattr(loaded, part).model_dump(), getattr(wanted, part).model_dump()
        diffs += [f"{part}.{k}: {have[k]} vs {want[k]}" for k in want if have[k] != want[k]]
    return diffs


def initial_model(args: GranViTArgs, tokenizer: Any) -> GranViT:
    """Random init of the preset, or ``init_from``'s export (must match preset and tokenizer)."""
    wanted = fit_vocab(args.granvit_config(), len(tokenizer))
    if args.init_from is None:
        model = GranViT(wanted)
        if args.coordinate_init > 0:
            values = coordinate_token_values(tokenizer, args.box_precision)
            model.init_coordinate_embeddings(values, args.coordinate_init)
        return model
    model, saved_tokenizer = load_full(args.init_from)
    if saved_tokenizer is not None and saved_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"init_from {args.init_from} was trained with another tokenizer than "
            f"{args.tokenizer_dir}: token ids would not match"
        )
    diffs = _architecture_diff(model.config, wanted)
    if diffs:
        raise ValueError(
            f"init_from {args.init_from} holds a different model than preset "
            f"{args.preset!r} with its overrides (init_from vs preset): {'; '.join(diffs)}"
        )
    return model


class FP32Teacher(EMATeacher):
    """EMA teacher kept in fp32 while the student may run in bf16 (DeepSpeed casts the student
    only): the EMA stays exact and the crops are cast to the teacher's dtype."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__(student)
        self.encoder.float()

    @torch.no_grad()
    def encode(self, pixel_values: Tensor, layer: int | None = None) -> Tensor:
        dtype = next(self.encoder.parameters()).dtype
        return super().encode(pixel_values.to(dtype), layer)


@contextmanager
def full_parameters(module: nn.Module) -> Iterator[None]:
    """Gather ZeRO-3 partitioned parameters of ``module`` (no-op otherwise)."""
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        yield
        return
    import deepspeed  # only reached under ZeRO-3

    with deepspeed.zero.GatheredParameters(params):
        yield


class GranViTRecipe:
    """Recipe protocol of ``training.recipes`` for GranViT (see the module docstring)."""

    Args = GranViTArgs

    def __init__(self) -> None:
        self.args: GranViTArgs | None = None
        self.tokenizer: Any = None
        self.config: GranViTConfig | None = None
        self.teacher: FP32Teacher | None = None
        self.feature_cache: FeatureCache | None = None

    def _args(self) -> GranViTArgs:
        if self.args is None:
            raise RuntimeError("GranViTRecipe.build_model must run first")
        return self.args

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        assert isinstance(cfg.recipe_args, GranViTArgs)  # TrainConfig validated it as `Args`
        args = self.args = cfg.recipe_args
        args.check_inputs()
        self.tokenizer = load_tokenizer(args.tokenizer_dir)
        model = initial_model(args, self.tokenizer)
        model.set_trainable(args.stage)
        self.config = model.config
        if args.spec.distills and args.lambda_distill > 0:
            self.teacher = FP32Teacher(model)  # starts as a copy of the student encoder
        if args.feature_cache_images:
            if cfg.zero_stage == 3:
                raise ValueError(
                    "feature_cache_images encodes outside the engine's forward, where ZeRO-3 "
                    "has not gathered the encoder: use zero_stage <= 2 or turn the cache off"
                )
            self.feature_cache = FeatureCache(args.feature_cache_images)
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def make_data(self, cfg: TrainConfig, rank: int, world_size: int) -> ShardBatches:
        args = self._args()
        assert self.config is not None
        dataset = ShardDataset(
            args.shards_dir, args.split, shuffle_buffer=args.shuffle_buffer, seed=cfg.seed,
            rank=rank, world_size=world_size, loop=True,
        )  # fmt: skip
        collator = Collator(
            self.tokenizer, args.prompts, args.task_weights(), self.config.vision.image_size,
            seed=cfg.seed, precision=args.box_precision, max_length=args.max_length,
            pack=args.pack,
        )  # fmt: skip
        builder = BatchBuilder(
            collator, text_only=args.spec.text_only, loss_on_prompts=args.loss_on_prompts
        )
        return ShardBatches(dataset, builder, cfg.micro_batch_size, args.num_workers)

    def compute_loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        args = self._args()
        if self.teacher is not None:
            self.teacher.to(batch["input_ids"].device)  # no-op after the first step
        if self.feature_cache is not None:
            features = self.feature_cache.features(model, batch["pixel_values"], batch["image_ids"])
            batch = {**batch, "image_features": features}
        return stage_loss(model, batch, args.stage, self.teacher, args.distill, args.lambda_distill)

    def after_step(self, model: nn.Module, step: int) -> None:
        """EMA update of the teacher towards the student encoder (stage 1)."""
        if self.teacher is not None:
            with full_parameters(model.vision):
                self.teacher.update(model, self._args().distill.ema_alpha)

    def extra_state(self) -> dict[str, Any]:
        if self.teacher is None:
            return {}
        state = self.teacher.encoder.state_dict()
        return {"teacher": {k: v.detach().cpu().clone() for k, v in state.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "teacher" not in state:
            if self.teacher is not None:
                raise ValueError("checkpoint has no EMA teacher but this stage-1 run needs one")
            return
        if self.teacher is None:
            raise ValueError("checkpoint carries an EMA teacher but this run has none")
        self.teacher.encoder.load_state_dict(state["teacher"])

    def export(self, model: nn.Module, out_dir: Path) -> None:
        export_full(model, out_dir, self.tokenizer)
        export_encoder(model, out_dir, self.tokenizer)  # HF encoder at the top of out_dir

    def count_tokens(self, batch: dict[str, Any]) -> int:
        assert self.config is not None
        return count_batch_tokens(batch, self.config.num_image_tokens)
