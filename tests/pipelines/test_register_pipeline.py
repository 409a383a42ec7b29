"""The register pipeline through real KedroSession runs of a temporary project copy (tiny encoder
export + evaluation report where evaluate would leave them, SQLite store from conf): the first
run makes the champion, an identical second run does not replace it, a better one does, and
``kedro models rollback`` moves it back. Also: the default pipeline ends with it, tracking off
skips it, and a report of another model is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from granvit_pipeline.cli import cli
from granvit_pipeline.model import GranViT, export_encoder, get_preset
from granvit_pipeline.pipeline_registry import register_pipelines
from granvit_pipeline.pipelines.register import nodes

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT = Path("data/08_reporting/evaluation_report.json")
DECISION = Path("data/08_reporting/promotion_decision.json")
METRICS = {"caption2bbox/acc@0.5": 0.2, "caption2bbox/mean_iou": 0.3,
           "bbox2caption/rouge_l": 0.4, "probe/shape/accuracy": 0.5}  # fmt: skip


def _write_report(project: Path, metrics: dict[str, float]) -> None:
    stage2 = json.loads((project / "data/06_models/stage2_result.json").read_text())
    model = {k: stage2[k] for k in ("stage", "export_dir", "weights_digest")}
    report = {"metrics": metrics, "split": "val", "images": 10, "data_version": "d1",
              "model": model, "params": {}}  # fmt: skip
    (project / REPORT).parent.mkdir(parents=True, exist_ok=True)
    (project / REPORT).write_text(json.dumps(report))


@pytest.fixture
def project(kedro_project: Path) -> Path:
    """A project copy with a tiny stage-2 export, its result and its evaluation report."""
    tmp_path = kedro_project
    torch.manual_seed(0)
    export = export_encoder(GranViT(get_preset("tiny")), tmp_path / "data/06_models/stage2/export")
    result = {"stage": "stage2", "export_dir": str(export), "weights_digest": "w1",
              "output_dir": str(export.parent)}  # fmt: skip
    (tmp_path / "data/06_models/stage2_result.json").write_text(json.dumps(result))
    _write_report(tmp_path, METRICS)
    return tmp_path


def _run(project: Path) -> dict[str, Any]:
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=["register"])
    return json.loads((project / DECISION).read_text())


def test_default_pipeline_ends_with_evaluate_register_promote() -> None:
    default = register_pipelines()["__default__"]
    names = [n.name for n in default.nodes]  # in dependency order
    order = ["train_stage2", "build_evaluation_report", "register_encoder", "promote_encoder"]
    assert [names.index(name) for name in order] == sorted(names.index(name) for name in order)
    assert {"registered_encoder", "promotion_decision"} <= default.all_outputs()


def test_a_report_of_another_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")
    monkeypatch.setenv("MLFLOW_RUN_ID", "r1")
    report = {"metrics": METRICS, "model": {"weights_digest": "old"}}
    with pytest.raises(ValueError, match="run the evaluate pipeline"):
        nodes.register_encoder(report, {"weights_digest": "new"}, {}, {}, {}, {})


def test_tracking_off_skips_the_registry(project: Path) -> None:
    (project / "conf" / "local" / "mlflow.yml").write_text("enabled: false\n")
    decision = _run(project)
    assert "tracking is off" in decision["skipped"]
    assert not (project / "mlruns").exists()


@pytest.mark.slow
def test_register_promote_and_rollback_through_kedro_sessions(
    project: Path, git_init: Callable[[Path], str]
) -> None:
    from mlflow import MlflowClient

    commit = git_init(project)
    first = _run(project)
    assert (first["decision"], first["version"], first["champion_after"]) == ("promoted", "1", "1")
    registered = json.loads((project / "data/07_model_output/registered_encoder.json").read_text())
    assert registered["model_uri"] == "models:/granvit-encoder/1"

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    v1 = client.get_model_version_by_alias("granvit-encoder", "champion")
    tags = v1.tags
    assert str(v1.version) == "1" and v1.run_id == registered["run_id"]
    assert json.loads(tags["eval.metrics"]) == METRICS and tags["data.version"] == "d1"
    assert tags["git.commit"] == commit and tags["kedro.pipeline"] == "register"
    assert tags["model.weights_digest"] == "w1" and len(tags["params.digest"]) == 64
    assert tags["eval.split"] == "val" and tags["eval.images"] == "10"
    assert len(tags["eval.params_digest"]) == 64
    # the runs of the same `kedro run` so far (a default run adds train_* and score_*)
    assert json.loads(tags["lineage.runs"]) == {"register_encoder": v1.run_id}
    parent = client.get_run(tags["lineage.parent_run_id"])
    assert parent.info.run_name == "register" and parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    promote_run = next(r for r in children if r.info.run_name == "promote_encoder")
    assert promote_run.data.tags["promotion.decision"] == "promoted"
    assert promote_run.data.tags["promotion.champion"] == "1"

    second = _run(project)  # the same model and numbers again: a tie
    assert (second["decision"], second["version"], second["champion_after"]) == (
        "rejected", "2", "1")  # fmt: skip
    assert any("FAIL improvement" in r for r in second["reasons"])
    assert str(client.get_model_version_by_alias("granvit-encoder", "challenger").version) == "2"
    assert client.get_model_version("granvit-encoder", "2").tags["promotion.decision"] == "rejected"

    _write_report(project, {**METRICS, "caption2bbox/acc@0.5": 0.3})
    third = _run(project)
    assert (third["decision"], third["champion_before"], third["champion_after"]) == (
        "promoted", "1", "3")  # fmt: skip

    metadata = bootstrap_project(project)
    runner = CliRunner()
    rolled = runner.invoke(cli, ["models", "rollback", "--reason", "bad on real data", "--by",
                                 "carol"], obj=metadata)  # fmt: skip
    assert rolled.exit_code == 0, rolled.output
    assert "champion v3 -> v1 (by carol: bad on real data)" in rolled.output
    assert str(client.get_model_version_by_alias("granvit-encoder", "champion").version) == "1"
    status = runner.invoke(cli, ["models", "status"], obj=metadata)
    assert "champion:   v1" in status.output and "challenger: v3" in status.output
    again = runner.invoke(cli, ["models", "rollback", "--reason", "x"], obj=metadata)
    assert again.exit_code != 0 and "no previous champion" in again.output
