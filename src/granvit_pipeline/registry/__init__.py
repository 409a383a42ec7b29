"""The MLflow Model Registry for the encoder, without Kedro: log, register, gate, promote, roll
back.

- ``encoder``: the exported encoder -> an MLflow pyfunc model loadable without project code
  (``encoder_model.py`` is its code; the HF folder its artifact).
- ``lineage``: model-version tags (evaluation metrics and set, git, Kedro, run ids, params).
- ``gates``: the promotion rules (pure functions); ``config``: their settings.
- ``versions``: ``ModelRegistry``: versions, aliases, promotion, rollback and their history.

``import mlflow`` takes seconds, so it happens only when a registry is used.
"""

from granvit_pipeline.registry.config import Floor, NoRegression, PromotionConfig, RegisterParams
from granvit_pipeline.registry.encoder import log_encoder, pip_requirements
from granvit_pipeline.registry.gates import Candidate, Decision, EvalSet, GateCheck, decide
from granvit_pipeline.registry.lineage import (
    candidate_from_tags,
    params_digest,
    report_tags,
    run_lineage,
)
from granvit_pipeline.registry.versions import ChampionChange, ModelRegistry

__all__ = [
    "Candidate",
    "ChampionChange",
    "Decision",
    "EvalSet",
    "Floor",
    "GateCheck",
    "ModelRegistry",
    "NoRegression",
    "PromotionConfig",
    "RegisterParams",
    "candidate_from_tags",
    "decide",
    "log_encoder",
    "params_digest",
    "pip_requirements",
    "report_tags",
    "run_lineage",
]
