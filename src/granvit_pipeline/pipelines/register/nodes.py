"""Register nodes: thin adapters from the catalog to :mod:`granvit_pipeline.registry`.

``register_encoder`` logs the evaluated stage-2 export's encoder as an MLflow model of its run,
registers it as a new version (metrics + lineage tags) and points ``challenger`` at it;
``promote_encoder`` applies the gates against ``champion`` and moves it, or says why not.

Both write to the MLflow run the tracking hooks open for them (tag ``mlflow_run``): the hooks
set ``MLFLOW_RUN_ID`` and ``MLFLOW_TRACKING_URI`` while the node runs. With tracking off (or a
concurrent runner, which gets no node runs) there is no registry to write to: the nodes log a
warning and return ``{"skipped": why}``.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.registry import ModelRegistry, RegisterParams, params_digest
from granvit_pipeline.registry.lineage import TAG_PARAMS_DIGEST
from granvit_pipeline.tracking import ENV_RUN_ID, ENV_TRACKING_URI

logger = logging.getLogger(__name__)


def _node_run() -> tuple[str, str] | None:
    """(tracking URI, run id) of this node's MLflow run, from the tracking hooks."""
    uri, run_id = os.environ.get(ENV_TRACKING_URI), os.environ.get(ENV_RUN_ID)
    return (uri, run_id) if uri and run_id else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def _skip(why: str) -> dict[str, Any]:
    logger.warning("model registry: %s; nothing registered or promoted", why)
    return {"skipped": why}


def _registry(cfg: RegisterParams, uri: str) -> ModelRegistry:
    return ModelRegistry(uri, cfg.model_name, cfg.champion_alias, cfg.challenger_alias)


def _check_same_model(report: Mapping[str, Any], stage2_result: Mapping[str, Any]) -> None:
    scored = (report.get("model") or {}).get("weights_digest")
    if scored != stage2_result.get("weights_digest"):
        raise ValueError(
            f"the evaluation report scored weights {scored} but stage2_result holds "
            f"{stage2_result.get('weights_digest')} ({stage2_result.get('export_dir')}): run the "
            "evaluate pipeline on this model before registering it"
        )


def register_encoder(
    evaluation_report: Mapping[str, Any],
    stage2_result: Mapping[str, Any],
    pretrain_params: Mapping[str, Any],
    adapt_params: Mapping[str, Any],
    evaluate_params: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Log + register the evaluated encoder; it becomes the ``challenger``.

    The parameters that made and scored the model (pretrain, adapt, evaluate) are digested
    into the version's ``params.digest`` tag: equal digests, equal recipe.
    """
    cfg = RegisterParams.model_validate(params)
    if not cfg.enabled:
        return _skip("register.enabled is false")
    if (node_run := _node_run()) is None:
        return _skip("MLflow tracking is off (conf mlflow.yml) or the runner is not sequential")
    _check_same_model(evaluation_report, stage2_result)
    uri, run_id = node_run
    digest = params_digest(
        {"pretrain": pretrain_params, "adapt": adapt_params, "evaluate": evaluate_params}
    )
    return _registry(cfg, uri).register_encoder(
        run_id, stage2_result["export_dir"], evaluation_report, cfg.artifact_name,
        {TAG_PARAMS_DIGEST: digest},
    )  # fmt: skip


def promote_encoder(registered: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Gates vs the current champion: move ``champion`` to the new version, or say why not."""
    cfg = RegisterParams.model_validate(params)
    if "skipped" in registered:
        return {"skipped": registered["skipped"]}
    if (node_run := _node_run()) is None:
        return _skip("MLflow tracking is off (conf mlflow.yml) or the runner is not sequential")
    uri, run_id = node_run
    if registered["model_name"] != cfg.model_name:
        raise ValueError(
            f"registered_encoder is a version of {registered['model_name']!r}, but "
            f"register.model_name is {cfg.model_name!r}: run register_encoder again"
        )
    registry = _registry(cfg, uri)
    by = registry.client.get_run(run_id).data.tags.get("mlflow.user") or _user()
    version = str(registered["version"])
    decision = registry.promote_if_better(version, cfg.promotion, by, run_id)
    return registry.record_on_run(run_id, version, decision)
