"""The training stages: what each one trains, on which tasks, from what. The one stage table.

GranViT (DESIGN.md section 2) trains in stages; the model (:meth:`GranViT.set_trainable`), the
loss (:func:`objectives.stage_loss`) and the recipe (``training.granvit.recipe``) all read
:data:`STAGES`, so a stage's rules are stated here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from granvit_pipeline.model.tasks import TASKS, Task

Stage = Literal["lm_warmup", "stage1", "stage2", "global_only"]
Part = Literal["vision", "projector", "llm"]


@dataclass(frozen=True)
class StageSpec:
    """One stage's rules."""

    trains: frozenset[Part]  # parts with gradients; the others are frozen
    tasks: tuple[Task, ...]  # tasks it may mix (default mix: all of them, weight 1 each)
    text_only: bool = False  # prompt -> answer without the image (the LM warm-up)
    continues: bool = False  # starts from the previous stage's export (``init_from``)
    distills: bool = False  # self-distillation from an EMA teacher (``lambda_distill > 0``)


STAGES: dict[Stage, StageSpec] = {
    # text-only warm-up of a randomly initialised LLM
    "lm_warmup": StageSpec(trains=frozenset({"llm"}), tasks=TASKS, text_only=True),
    # the LLM is frozen but stays in the graph, so gradients flow through it to the encoder
    "stage1": StageSpec(
        trains=frozenset({"vision", "projector"}),
        tasks=("global", "bbox2caption"),
        continues=True,
        distills=True,
    ),
    # the ablation's base encoder: global captions only, from stage 1's start
    "global_only": StageSpec(trains=frozenset({"vision", "projector"}), tasks=("global",)),
    # the encoder is frozen
    "stage2": StageSpec(
        trains=frozenset({"projector", "llm"}), tasks=("global", "caption2bbox"), continues=True
    ),
}


def stage_spec(stage: str) -> StageSpec:
    """The rules of ``stage``; an unknown name is an error that lists the stages."""
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; choose one of {tuple(STAGES)}") from None
