"""The tracking hooks through real KedroSession runs of a temporary project copy: the run tree
(parent + nested runs, params, tags, live training metrics, report artifacts) in a SQLite
store, failed runs marked FAILED with the error, and nothing written when tracking is off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from mlflow import MlflowClient

from granvit_pipeline.regions.shards import read_manifest
from granvit_pipeline.training.granvit.smoke import write_demo_shards

SHARDS = Path("data/05_model_input/shards")
TINY = {
    "ingest": {"demo": {"n_images": 16}},
    "pretrain": {
        "common": {
            "training": {"micro_batch_size": 4, "precision": "fp32", "log_every": 1},
            "recipe": {"preset": "tiny", "num_workers": 0, "shuffle_buffer": 8},
        },
        "tokenizer": {"vocab_size": 1024},
        "lm_warmup": {"training": {"steps": 2, "warmup_steps": 0}},
    },
}


def _runs(uri: str) -> dict[str, object]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("granvit")
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def _artifacts(client: MlflowClient, run_id: str, folder: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, folder)}


@pytest.mark.slow
def test_run_tree_of_data_and_training(project: Path, git_init: Callable[[Path], str]) -> None:
    commit = git_init(project)
    with KedroSession.create(project_path=project, runtime_params=TINY) as session:
        session.run(pipeline_names=["data", "pretrain"], to_nodes=["train_lm_warmup"])
    assert "MLFLOW_RUN_ID" not in os.environ and "MLFLOW_TRACKING_URI" not in os.environ

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client, runs = MlflowClient(tracking_uri=uri), _runs(uri)
    assert set(runs) == {"data+pretrain", "train_tokenizer", "train_lm_warmup"}
    parent = runs["data+pretrain"]
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith((project / "mlruns" / "artifacts").as_uri())
    tags = parent.data.tags
    assert tags["mlflow.source.git.commit"] == commit and tags["git.dirty"] == "false"
    assert tags["kedro.pipeline"] == "data+pretrain" and tags["kedro.env"] == "local"
    assert tags["data.version"] == read_manifest(project / SHARDS)["content_hash"]
    params = parent.data.params
    assert params["ingest.demo.n_images"] == "16"
    assert params["pretrain.common.recipe.preset"] == "tiny"
    assert params["validate.checks.min_box_area"]  # data-pipeline params on the parent
    assert _artifacts(client, parent.info.run_id, "reports") == {
        "reports/validation_report.json", "reports/validation_report.html"}  # fmt: skip

    for name in ("train_tokenizer", "train_lm_warmup"):
        run = runs[name]
        assert run.info.status == "FINISHED" and run.data.tags["kedro.node"] == name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["data.version"] == tags["data.version"]
    warmup = runs["train_lm_warmup"]
    assert warmup.data.params["pretrain.lm_warmup.training.steps"] == "2"
    # streamed by the training child process through MlflowCallback
    loss = client.get_metric_history(warmup.info.run_id, "loss")
    assert [m.step for m in loss] == [1, 2] and all(m.value > 0 for m in loss)
    assert {"lr", "grad_norm", "samples_per_s", "tokens_per_s"} <= set(warmup.data.metrics)
    assert _artifacts(client, warmup.info.run_id, "training") == {
        "training/metrics.png", "training/result.json", "training/run_config.json"}  # fmt: skip


def test_failing_node_marks_parent_and_nested_run_failed(
    project: Path, sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)  # wins over conf (a team server)
    write_demo_shards(project / SHARDS, n_images=8)
    typo = {"pretrain": {"tokenizer": {"vocab_sizee": 512}}}
    with (
        KedroSession.create(project_path=project, runtime_params=typo) as session,
        pytest.raises(Exception, match="vocab_sizee"),
    ):
        session.run(pipeline_names=["pretrain"], node_names=["train_tokenizer"])
    assert os.environ["MLFLOW_TRACKING_URI"] == sqlite_uri and "MLFLOW_RUN_ID" not in os.environ
    assert not (project / "mlruns" / "mlflow.db").exists()  # the env's store, not conf's

    client = MlflowClient(tracking_uri=sqlite_uri)
    runs = _runs(sqlite_uri)
    parent, nested = runs["pretrain"], runs["train_tokenizer"]
    assert nested.data.tags["mlflow.parentRunId"] == parent.info.run_id
    for run in (parent, nested):
        assert run.info.status == "FAILED"
        assert "vocab_sizee" in run.data.tags["error"]
        assert _artifacts(client, run.info.run_id, "") == {"error.txt"}


def test_fluent_logging_in_a_node_stays_in_the_node_run(
    sqlite_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from granvit_pipeline.tracking.runs import end_fluent_run

    client = MlflowClient(tracking_uri=sqlite_uri)
    experiment = client.get_experiment_by_name("Default").experiment_id
    run_id = client.create_run(experiment, run_name="node").info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)  # what the node hook sets
    mlflow.log_metric("from_node", 1.0)  # a node using MLflow's fluent API
    assert mlflow.active_run().info.run_id == run_id
    end_fluent_run(run_id)  # after_node_run
    assert mlflow.active_run() is None
    assert client.get_run(run_id).data.metrics == {"from_node": 1.0}


def test_disabled_tracking_writes_nothing(project: Path) -> None:
    (project / "conf" / "local" / "mlflow.yml").write_text("enabled: false\n")
    write_demo_shards(project / SHARDS, n_images=8)
    with KedroSession.create(project_path=project, runtime_params=TINY) as session:
        session.run(pipeline_names=["pretrain"], node_names=["train_tokenizer"])
    assert (project / "data" / "06_models" / "tokenizer" / "tokenizer.json").is_file()
    assert not (project / "mlruns").exists()
    assert "MLFLOW_RUN_ID" not in os.environ
