"""The data pipeline end to end: a real KedroSession on small demo data, COCO128 through the
command-line parameters, and a run that stops on too many rejected rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kedro.framework.session import KedroSession

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.shards import ShardDataset, read_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(kedro_project: Path) -> Path:
    """A copy of the project's conf in a temporary folder, run from there (data stays there)."""
    return kedro_project


def _run(project: Path, pipeline: str, params: dict) -> None:
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])


def test_data_pipeline_on_demo_data(project: Path) -> None:
    _run(project, "data", {"ingest": {"demo": {"n_images": 60}}})

    report = json.loads((project / "data/08_reporting/validation_report.json").read_text())
    raw = json.loads((project / "data/02_intermediate/raw_regions/summary.json").read_text())
    assert report["rows_checked"] == raw["rows"] > 0
    assert report["rows_accepted"] + report["rows_rejected"] == report["rows_checked"]
    assert sum(report["filter_removals"].values()) == report["filtered_rows"]
    # The built-in data meets the conf's demo settings: its OCR lines (7 of the 14 here are
    # wider than the paper's 3:1) are not filtered out.
    assert report["rows_rejected"] == 0, report["rejected_by_rule"]
    assert "<table" in (project / "data/08_reporting/validation_report.html").read_text()

    quarantine = pq.read_table(project / "data/03_primary/regions/quarantine.parquet")
    assert quarantine.num_rows == report["rows_rejected"]

    manifest = read_manifest(project / "data/05_model_input/shards")
    assert sum(s["regions"] for s in manifest["shards"]) == report["rows_accepted"]
    samples = list(ShardDataset(project / "data/05_model_input/shards", "train"))
    assert len(samples) == manifest["splits"]["train"]["images"] > 0
    assert all(s["image"].size == (s["width"], s["height"]) for s in samples)


def test_same_input_gives_the_same_shards(project: Path) -> None:
    params = {"ingest": {"demo": {"n_images": 30}}}
    _run(project, "data", params)
    first = read_manifest(project / "data/05_model_input/shards")["content_hash"]
    _run(project, "data", params)
    assert read_manifest(project / "data/05_model_input/shards")["content_hash"] == first


def test_coco128_from_command_line_parameters(project: Path, coco128: Path) -> None:
    source = {
        "format": "coco",
        "annotations": str(coco128 / "annotations" / "instances_train2017.json"),
        "images": str(coco128 / "train2017"),
    }
    _run(project, "data", {"ingest": source})

    report = json.loads((project / "data/08_reporting/validation_report.json").read_text())
    assert report["rows_checked"] == 939  # every COCO128 instance box was mapped
    assert report["filter_removals"]["image_short_side"] > 0  # paper filters really applied
    manifest = read_manifest(project / "data/05_model_input/shards")
    assert sum(s["regions"] for s in manifest["shards"]) == report["rows_accepted"] > 0


def test_too_many_rejected_rows_stops_the_run_after_writing_the_report(project: Path) -> None:
    images = project / "imgs"
    images.mkdir()
    lines = [
        {
            "image_id": str(i),
            "image": "missing.png",  # no such file: every row fails the image checks
            "width": 512,  # passes the paper's filters, so only the image checks can fail
            "height": 512,
            "kind": "natural",
            "regions": [
                {"id": "0", "box": [1, 1, 300, 300], "text": "a thing", "text_type": "refexp"}
            ],
        }
        for i in range(5)
    ]
    (project / "bad.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    params = {"ingest": {"format": "jsonl", "annotations": "bad.jsonl", "images": "imgs"}}

    with pytest.raises(DataError, match=r"max_rejected_fraction.*image_missing=5"):
        _run(project, "data", params)
    report = json.loads((project / "data/08_reporting/validation_report.json").read_text())
    assert report["passed"] is False
    assert report["rejected_by_rule"]["image_missing"] == 5
    assert not (project / "data/03_primary/regions").exists()


def test_several_sources_from_a_conf_environment(project: Path, coco128: Path) -> None:
    env = project / "conf" / "mix"
    env.mkdir()
    (env / "parameters_ingest.yml").write_text(
        "ingest:\n"
        "  demo: {n_images: 20}\n"
        "  sources:\n"
        "    - {format: demo}\n"
        f"    - {{format: coco, source: coco128,"
        f" annotations: {coco128}/annotations/instances_train2017.json,"
        f" images: {coco128}/train2017}}\n"
    )
    with KedroSession.create(project_path=project, env="mix") as session:
        session.run(pipeline_names=["ingest"])

    summary = json.loads((project / "data/02_intermediate/raw_regions/summary.json").read_text())
    assert summary["rows_per_source"]["coco128"] == 939
    assert summary["rows_per_source"]["demo"] > 0
    assert summary["rows"] == sum(summary["rows_per_source"].values())
