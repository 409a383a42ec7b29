"""A registered version carries its run's provenance: git, Kedro and the DVC data hashes."""

from __future__ import annotations

from granvit_pipeline.registry.lineage import run_lineage


def test_run_lineage_copies_git_kedro_and_dvc_tags(store: str, new_run) -> None:
    from mlflow import MlflowClient

    run_tags = {
        "mlflow.source.git.commit": "c0ffee", "git.dirty": "false", "kedro.env": "local",
        "dvc.data/05_model_input/shards": "5ea7.dir", "dvc.lock_sha256": "ab12",
        "kedro.node": "register_encoder",  # not provenance: stays on the run
    }  # fmt: skip
    run_id = new_run(tags=run_tags)
    tags = run_lineage(MlflowClient(tracking_uri=store), run_id)
    assert tags == {
        "git.commit": "c0ffee", "git.dirty": "false", "kedro.env": "local",
        "dvc.data/05_model_input/shards": "5ea7.dir", "dvc.lock_sha256": "ab12",
        "lineage.run_id": run_id,
    }  # fmt: skip
