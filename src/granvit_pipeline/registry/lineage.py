"""What a registered version records about where it came from, as model-version tags.

Tags, not params: a version's tags are searchable (``tags.`data.version` = '...'``) and shown in
the registry UI. Values are strings; the metrics and run ids are JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.registry.gates import Candidate, EvalSet

TAG_METRICS = "eval.metrics"  # JSON {report key: value}, the numbers the gates compare
TAG_DATA_VERSION = "data.version"  # shard manifest content hash of the evaluation data
TAG_SPLIT = "eval.split"
TAG_IMAGES = "eval.images"
TAG_EVAL_PARAMS = "eval.params_digest"  # sha256 of the evaluate parameters (the protocol)
TAG_WEIGHTS = "model.weights_digest"  # sha256 of the trained weights (training engine)
TAG_EXPORT_DIR = "model.export_dir"
TAG_STAGE = "model.stage"
TAG_PARAMS_DIGEST = "params.digest"  # sha256 of the pipeline parameters that made the model
TAG_RUN_ID = "lineage.run_id"  # the run that logged and registered the version
TAG_PARENT_RUN_ID = "lineage.parent_run_id"  # that run's `kedro run`
TAG_RUNS = "lineage.runs"  # JSON {run name: run id} of that `kedro run` (training, scoring)

# Run tags (set by the tracking hooks) copied onto the version, under shorter names.
RUN_TAGS = {
    "mlflow.source.git.commit": "git.commit",
    "mlflow.source.git.branch": "git.branch",
    "git.dirty": "git.dirty",
    "kedro.pipeline": "kedro.pipeline",
    "kedro.env": "kedro.env",
    "kedro.session_id": "kedro.session_id",
}
# Run tags copied as they are: the DVC hashes of the data in dvc.lock (tracking.provenance).
RUN_TAG_PREFIXES = ("dvc.",)


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the parameters as canonical JSON (sorted keys): equal params, equal digest."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def report_tags(report: Mapping[str, Any]) -> dict[str, str]:
    """Tags from an evaluation report (``pipelines.evaluate``): metrics, data, split, model."""
    model = report.get("model") or {}
    values = {
        TAG_DATA_VERSION: report.get("data_version"),
        TAG_SPLIT: report.get("split"),
        TAG_IMAGES: report.get("images"),
        TAG_EVAL_PARAMS: params_digest(report["params"]) if "params" in report else None,
        TAG_WEIGHTS: model.get("weights_digest"),
        TAG_EXPORT_DIR: model.get("export_dir"),
        TAG_STAGE: model.get("stage"),
    }
    tags = {key: str(value) for key, value in values.items() if value is not None}
    return {TAG_METRICS: json.dumps(report["metrics"], sort_keys=True), **tags}


def run_lineage(client: Any, run_id: str) -> dict[str, str]:
    """Provenance from the run: git, DVC data hashes, Kedro, and the ids of the runs of the same
    ``kedro run``."""
    run = client.get_run(run_id)
    run_tags = run.data.tags
    tags = {ours: run_tags[theirs] for theirs, ours in RUN_TAGS.items() if theirs in run_tags}
    tags.update({k: v for k, v in run_tags.items() if k.startswith(RUN_TAG_PREFIXES)})
    tags[TAG_RUN_ID] = run_id
    parent = run_tags.get("mlflow.parentRunId")
    if parent:
        tags[TAG_PARENT_RUN_ID] = parent
        siblings = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        )
        runs = {r.info.run_name: r.info.run_id for r in siblings}
        tags[TAG_RUNS] = json.dumps(dict(sorted(runs.items())))
    return tags


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def candidate_from_tags(version: str | None, tags: Mapping[str, str]) -> Candidate:
    """A registered version as the gates see it (metrics and evaluation set from its tags)."""
    try:
        metrics = json.loads(tags.get(TAG_METRICS, "{}"))
    except json.JSONDecodeError:
        metrics = {}
    eval_set = EvalSet(
        tags.get(TAG_DATA_VERSION), tags.get(TAG_SPLIT), _int_or_none(tags.get(TAG_IMAGES)),
        tags.get(TAG_EVAL_PARAMS),
    )  # fmt: skip
    return Candidate(version, metrics, eval_set, tags.get(TAG_WEIGHTS))
