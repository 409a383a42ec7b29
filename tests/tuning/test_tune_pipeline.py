"""``kedro run --pipelines tune`` through real KedroSessions of a project copy (tiny preset): the
study fills up with trials scored on the val split, each a nested MLflow run under the run's
parent, the study's best values land in conf/tuned, and a second run on the same study adds
nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from kedro.framework.session import KedroSession

TINY = {
    "pretrain": {
        "common": {
            "training": {"micro_batch_size": 4, "precision": "fp32", "log_every": 100},
            "recipe": {"preset": "tiny", "num_workers": 0, "shuffle_buffer": 8},
        },
    },
    "tune": {
        "n_trials": 3,
        "study": {"name": "e2e", "sampler_seed": 0},
        "pruner": {"n_startup_trials": 1, "n_warmup_steps": 0},
        "objective": {
            "stages": ["stage1"], "max_steps": {"stage1": 4}, "report_every": 2,
            "in_process": True, "score": {"max_images": 8, "batch_size": 8, "device": "cpu"},
        },
    },
}  # fmt: skip


@pytest.fixture
def project(kedro_project: Path, tiny_inputs: dict) -> Path:
    """What ``pretrain`` leaves for tune (shards with a val split, tokenizer, LM warm-up export:
    the tuning tests' tiny ones, where the catalog expects them); tune's space without stage 2.
    """
    models = kedro_project / "data/06_models"
    shutil.copytree(tiny_inputs["shards"], kedro_project / "data/05_model_input/shards")
    shutil.copytree(tiny_inputs["tokenizer"], models / "tokenizer")
    warmup = {"stage": "lm_warmup", "export_dir": str(tiny_inputs["init_from"])}
    (models / "lm_warmup_result.json").write_text(json.dumps(warmup))
    # Runtime params cannot delete keys: the stage-2 entry of the space, the demo overrides of
    # the preset (the warm-up export is the plain tiny preset).
    _edit(kedro_project / "conf/base/parameters_tune.yml",
          lambda p: p["tune"]["space"].pop("stage2_lr"))  # fmt: skip
    _edit(kedro_project / "conf/base/parameters_pretrain.yml",
          lambda p: p["pretrain"]["common"]["recipe"].update(overrides={}))  # fmt: skip
    return kedro_project


def _edit(path: Path, change: Callable[[dict], object]) -> None:
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params))


@pytest.mark.slow
def test_tune_pipeline_fills_the_study_and_writes_the_best_params(project: Path) -> None:
    from mlflow import MlflowClient

    with KedroSession.create(project_path=project, runtime_params=TINY) as session:
        session.run(pipeline_names=["tune"])

    study = optuna.load_study(
        study_name="e2e", storage=f"sqlite:///{project}/data/07_model_output/optuna.db"
    )
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3 and {t.state.name for t in finished} <= {"COMPLETE", "PRUNED"}
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 3

    tuned = yaml.safe_load((project / "conf/tuned/parameters_tuned.yml").read_text())
    best = study.best_trial
    assert tuned["pretrain"]["stage1"]["training"]["lr"] == pytest.approx(best.params["stage1_lr"])
    [summary_file] = (project / "data/07_model_output/tune_summary.json").glob(
        "*/tune_summary.json"
    )
    summary = json.loads(summary_file.read_text())
    assert summary["best"]["value"] == pytest.approx(best.value)
    assert summary["best"]["number"] == best.number

    client = MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")
    [parent] = client.search_runs(
        [client.get_experiment_by_name("granvit").experiment_id],
        "attributes.run_name = 'tune'",
    )
    trials = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in trials) == ["trial_0000", "trial_0001", "trial_0002"]
    by_name = {r.info.run_name: r for r in trials}
    best_run = by_name[f"trial_{best.number:04d}"]
    assert best_run.data.metrics["objective"] == pytest.approx(best.value)
    assert best_run.data.params["stage1_lr"] == str(best.params["stage1_lr"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "tuning")}
    assert artifacts == {"tuning/best_params.json", "tuning/parameters_tuned.yml"}

    # A second worker on the full study runs no trial and still reports the same best.
    with KedroSession.create(project_path=project, runtime_params=TINY) as session:
        session.run(pipeline_names=["tune"])
    assert len(optuna.load_study(study_name="e2e", storage=study._storage).trials) == 3
    assert yaml.safe_load((project / "conf/tuned/parameters_tuned.yml").read_text()) == tuned
