"""The top-level dvc.yaml follows its rules (see its header) and agrees with the Kedro project:
registered pipelines, catalog paths, parameter files and the code each pipeline imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
import yaml

from granvit_pipeline.storage import remote_settings

pytestmark = pytest.mark.slow  # register_pipelines imports torch and DeepSpeed (~10 s here)

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = "granvit_pipeline"
STAGES = ["ingest", "validate", "shard", "pretrain", "adapt", "evaluate"]
# Registered pipelines that are not stages, and why (a new pipeline must be placed here or in
# dvc.yaml: this test fails until someone decides).
NOT_STAGES = {
    "__default__": "composite",
    "data": "composite: ingest + validate + shard",
    "base_encoder": "ablation base encoder, as costly as stage 1; run on demand",
    "ablation": "the ablation ladder, several extra trainings; run on demand",
    "tune": "Optuna search; its result is a conf environment, not data",
    "register": "MLflow Model Registry side effects, not files",
}
# Catalog entries that are not DVC outs, and why.
UNVERSIONED = {
    "demo_images": "loose raw images: the shards hold their bytes",
    "demo_annotations": "raw layer (data/01_raw), like the images",
}
# Library packages that a pipeline imports but that do not shape its outputs.
CODE_EXEMPT = {
    "tracking": "MLflow logging only",
    "tuning": "Optuna trial reporting and pruning, inactive outside a tuning trial",
}
# Parameters a pipeline reads that deliberately are not its stage's params.
PARAMS_EXEMPT = {"pretrain.global_only": "the base_encoder pipeline's, outside the DVC chain"}
# Pipelines that follow the training lineage (run_config init_from) back to the first stage.
LINEAGE_READERS = {"evaluate": "the run report plots every stage's loss curves"}
# Training stages write <output_root>/<stage>/ (pretrain.common.output_root).
TRAINING_DIRS = {"pretrain": ["lm_warmup", "stage1"], "adapt": ["stage2"]}


@pytest.fixture(scope="module")
def stages() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Any]:
    from granvit_pipeline.pipeline_registry import register_pipelines

    return register_pipelines()


@pytest.fixture(scope="module")
def catalog_paths() -> dict[str, str]:
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(REPO / "conf"), base_env="base", default_run_env="base")
    return {
        name: entry.get("path") or entry.get("filepath")
        for name, entry in loader["catalog"].items()
        if entry.get("path") or entry.get("filepath")
    }


def _paths(entries: list[Any]) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def _outs(stage: dict[str, Any]) -> list[str]:
    return _paths(stage.get("outs", [])) + _paths(stage.get("metrics", []))


def _params(stage: dict[str, Any]) -> list[tuple[str, str]]:
    return [(file, key) for entry in stage.get("params", []) for file, keys in entry.items()
            for key in keys]  # fmt: skip


def _lookup(file: str, key: str) -> Any:
    data = yaml.safe_load((REPO / file).read_text())
    return reduce(lambda node, part: node[part], key.split("."), data)


def _imported_packages(pipeline: str) -> set[str]:
    """``pipelines/<name>`` and library packages that ``pipelines/<pipeline>`` imports,
    transitively, at package granularity (a package counts whole)."""

    def package_of(module: str) -> str | None:
        parts = module.split(".")
        if len(parts) < 2 or parts[0] != PACKAGE:
            return None
        if parts[1] == "pipelines":
            return f"pipelines/{parts[2]}" if len(parts) > 2 else None
        return parts[1] if (SRC / PACKAGE / parts[1]).is_dir() else None

    from granvit_pipeline.training.launcher import ENTRY_MODULE

    found: set[str] = set()
    todo = [f"pipelines/{pipeline}"]
    while todo:
        package = todo.pop()
        if package in found:
            continue
        found.add(package)
        if package in CODE_EXEMPT:  # what only they import does not shape the outputs either
            continue
        if package == "training":  # its launcher runs the worker package in child processes
            todo.append(package_of(ENTRY_MODULE))
        for file in (SRC / PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                todo += [p for p in map(package_of, names) if p and p not in found]
    return found


def test_one_stage_per_pipeline_in_order_running_it(stages, pipelines):
    assert list(stages) == STAGES
    assert set(pipelines) - set(NOT_STAGES) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --pipelines {name}"
        assert name in pipelines


def test_params_come_straight_from_the_pipeline_parameter_files(stages, pipelines):
    assert not (REPO / "params.yaml").exists()  # no duplicated parameters
    for name, stage in stages.items():
        listed = _params(stage)
        for file, key in listed:
            assert file == f"conf/base/parameters_{key.split('.')[0]}.yml", (name, file, key)
            _lookup(file, key)  # KeyError: a key the file does not have
        keys = [key for _, key in listed]
        read = [
            i.removeprefix("params:") for i in pipelines[name].inputs() if i.startswith("params:")
        ]
        for param in read:  # every parameter the pipeline reads is covered ...
            if any(param == k or param.startswith(k + ".") for k in keys):
                continue
            file = f"conf/base/parameters_{param.split('.')[0]}.yml"
            children = {f"{param}.{child}" for child in _lookup(file, param)}
            assert children - set(keys) - set(PARAMS_EXEMPT) == set(), (name, param)
        for key in keys:  # ... and nothing else is listed
            assert any(key == p or key.startswith(p + ".") for p in read), (name, key)


def test_deps_and_outs_are_the_catalog_paths_of_the_pipeline(stages, pipelines, catalog_paths):
    output_root = _lookup("conf/base/parameters_pretrain.yml", "pretrain.common.output_root")
    for name, stage in stages.items():
        pipeline = pipelines[name]
        inputs = {catalog_paths[d] for d in pipeline.inputs() if d in catalog_paths}
        outputs = {
            catalog_paths[d]
            for d in pipeline.all_outputs()
            if d in catalog_paths and d not in UNVERSIONED
        }
        # A `<stage>_result` input points at that stage's folder: a dependency too.
        inputs |= {
            f"{output_root}/{d.removesuffix('_result')}"
            for d in pipeline.inputs()
            if d.endswith("_result")
        }
        outputs |= {f"{output_root}/{d}" for d in TRAINING_DIRS.get(name, [])}
        if name in LINEAGE_READERS:  # every training stage's folder up to its input's
            earlier = STAGES[: STAGES.index(name)]
            inputs |= {f"{output_root}/{d}" for s in earlier for d in TRAINING_DIRS.get(s, [])}
        data_deps = {d for d in stage["deps"] if d.startswith("data/")}
        assert data_deps == inputs, name
        assert set(_outs(stage)) == outputs, name


def test_code_deps_are_the_packages_the_pipeline_imports(stages):
    for name, stage in stages.items():
        code = {
            d.removeprefix(f"src/{PACKAGE}/")
            for d in stage["deps"]
            if d.startswith(f"src/{PACKAGE}/")
        }
        assert code == _imported_packages(name) - set(CODE_EXEMPT), name
        for dep in stage["deps"]:
            assert dep.startswith("data/") or (REPO / dep).exists(), (name, dep)


def test_outs_do_not_overlap_and_deps_come_from_earlier_stages(stages):
    producer = {}
    for name, stage in stages.items():
        for dep in stage["deps"]:
            if dep.startswith("data/"):
                assert producer.get(dep) in STAGES[: STAGES.index(name)], (name, dep)
        for out in _outs(stage):
            assert out not in producer, out
            producer[out] = name
    outs = [Path(p) for p in producer]
    for a in outs:
        for b in outs:
            assert a == b or not a.is_relative_to(b), (a, b)


def test_real_files_the_stages_read_are_deps(stages):
    deepspeed = _lookup(
        "conf/base/parameters_pretrain.yml", "pretrain.common.training.deepspeed_config"
    )
    for name in ("pretrain", "adapt"):  # the training stages read the DeepSpeed JSON
        assert any(Path(deepspeed).is_relative_to(d) for d in stages[name]["deps"]), name
    assert "${globals:" in (REPO / "conf/base/parameters_ingest.yml").read_text()
    assert "conf/base/globals.yml" in stages["ingest"]["deps"]


def test_metrics_are_the_evaluation_report_kept_in_git(stages):
    assert stages["evaluate"]["metrics"] == [
        {"data/08_reporting/evaluation_report.json": {"cache": False}}
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "data/08_reporting/evaluation_report.json"], cwd=REPO
    )
    assert ignored.returncode == 1  # not ignored: committed next to dvc.lock


def test_dvc_parses_the_pipeline_and_ignores_bytecode():
    dvc = str(Path(sys.executable).parent / "dvc")
    for args in (["dag"], ["status", "--quiet"]):
        proc = subprocess.run([dvc, *args], cwd=REPO, capture_output=True, text=True)
        assert "ERROR" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 1), proc.stderr  # status --quiet: 1 = changes
    pyc = f"src/{PACKAGE}/model/__pycache__/config.cpython-311.pyc"
    proc = subprocess.run([dvc, "check-ignore", pyc], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, "byte-code would change the code deps' hashes"


def test_remotes_default_local_folder_and_s3_without_credentials():
    from dvc.config import Config

    name, local = remote_settings(REPO)  # raises if the committed config holds credentials
    assert name == "local" and not local["url"].startswith(("s3://", "http"))
    committed = Config(dvc_dir=str(REPO / ".dvc")).load_one("repo")["remote"]
    # ../../dvc-storage from .dvc/: the folder beside the checkout
    assert Path(committed["local"]["url"]) == REPO.parent / "dvc-storage"
    assert committed["s3"] == {"url": "s3://granvit-dvc/dvcstore"}  # endpoint: config.local
