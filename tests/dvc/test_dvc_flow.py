"""The DVC flow on a temporary git copy of the project (real dvc.yaml, fake stage commands).

``dvc repro`` -> unchanged tree does nothing -> one parameter re-runs exactly what is downstream
-> ``dvc exp run -S`` -> ``dvc push`` to S3 (rclone) and to the local-folder remote, wipe the
cache and outs, ``dvc pull``, ``dvc status`` clean -> wrong credentials fail clearly.
Each test leaves the repository as the fixture committed it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from granvit_pipeline.storage import RcloneS3Server, s3_client, split_s3_url

pytestmark = pytest.mark.slow

STAGES = ["ingest", "validate", "shard", "pretrain", "adapt", "evaluate"]
METRICS = "data/08_reporting/evaluation_report.json"  # cache: false, committed to git
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, s3_server: RcloneS3Server, make_dvc_project
) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("dvc-flow")
    project = make_dvc_project(base / "repo", s3_server, base / "local-remote")
    project.dvc("repro")
    project.first_run = project.ran()  # type: ignore[attr-defined]
    project.run("git", "add", "dvc.lock", METRICS)
    project.run("git", "commit", "--quiet", "-m", "repro")
    yield project


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(str(f.relative_to(path.parent)).encode() + f.read_bytes())
    return h.hexdigest()


def _cached_outs(project: Any) -> list[Path]:
    return [p for p in project.outs() if p != project.root / METRICS]


def _wipe_cache_and_outs(project: Any) -> None:
    shutil.rmtree(project.root / ".dvc" / "cache")
    for out in _cached_outs(project):
        shutil.rmtree(out) if out.is_dir() else out.unlink()


def _set_param(path: Path, key: str, value: object) -> None:
    data = yaml.safe_load(path.read_text())
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_repro_runs_every_stage_in_order_and_git_sees_only_lock_and_metrics(project):
    assert project.first_run == STAGES
    assert project.run("git", "status", "--porcelain").stdout == ""
    tracked = project.run("git", "ls-files", "data").stdout.split()
    assert tracked == [METRICS]  # every other out is git-ignored and in the DVC cache


def test_repro_on_unchanged_tree_does_nothing(project):
    out = project.dvc("repro").stdout
    assert project.ran() == []
    assert UP_TO_DATE in out
    assert project.dvc("status").stdout.strip() == UP_TO_DATE


@pytest.mark.parametrize(
    ("params_file", "key", "value", "expected"),
    [
        ("parameters_shard.yml", "shard.max_images_per_shard", 7, STAGES[2:]),
        ("parameters_pretrain.yml", "pretrain.common.training.seed", 7, STAGES[3:]),
        ("parameters_adapt.yml", "adapt.stage2.training.steps", 7, ["adapt", "evaluate"]),
        ("parameters_evaluate.yml", "evaluate.batch_size", 7, ["evaluate"]),
        # base_encoder's parameters: outside the DVC chain
        ("parameters_pretrain.yml", "pretrain.global_only.training", {"steps": 7}, []),
    ],
)
def test_one_parameter_reruns_exactly_the_stages_downstream(
    project, params_file, key, value, expected
):
    path = project.root / "conf" / "base" / params_file
    original = path.read_text()
    _set_param(path, key, value)
    try:
        status = project.dvc("status").stdout
        if expected:
            assert f"{expected[0]}:" in status
        else:
            assert status.strip() == UP_TO_DATE
        project.dvc("repro")
        assert project.ran() == expected
    finally:
        path.write_text(original)
    project.dvc("repro")  # back: the run cache restores the previous outs without running
    assert project.ran() == []
    assert project.dvc("status").stdout.strip() == UP_TO_DATE


def test_exp_run_set_param(project):
    key = "conf/base/parameters_adapt.yml:adapt.stage2.training.lr=0.5"
    project.dvc("exp", "run", "-S", key)
    assert project.ran() == ["adapt", "evaluate"]
    params = yaml.safe_load((project.root / "conf/base/parameters_adapt.yml").read_text())
    assert params["adapt"]["stage2"]["training"]["lr"] == 0.5
    assert project.run("git", "diff", "--name-only").stdout.split() == [
        "conf/base/parameters_adapt.yml",
        METRICS,
        "dvc.lock",
    ]
    project.run("git", "checkout", "--", ".")
    project.dvc("checkout")
    assert project.dvc("status").stdout.strip() == UP_TO_DATE


def test_push_to_s3_wipe_pull_status_clean(project, s3_server):
    storage = sys.executable, "-m", "granvit_pipeline.storage"
    created = project.run(*storage, "ensure-bucket", "--remote", "s3")
    assert "created" in created.stderr or "exists" in created.stderr
    project.dvc("push", "-r", "s3")
    bucket, prefix = split_s3_url("s3://granvit-dvc/dvcstore")
    listed = s3_client(s3_server.credentials, s3_server.endpoint_url).list_objects_v2(
        Bucket=bucket, Prefix=prefix
    )
    assert listed["KeyCount"] > 0
    before = {out: _tree_digest(out) for out in _cached_outs(project)}

    _wipe_cache_and_outs(project)
    assert "deleted" in project.dvc("status").stdout
    project.dvc("pull", "-r", "s3")

    assert {out: _tree_digest(out) for out in _cached_outs(project)} == before
    assert project.dvc("status").stdout.strip() == UP_TO_DATE
    assert "in sync" in project.dvc("status", "--cloud", "-r", "s3").stdout
    assert project.ran() == []


def test_default_local_remote_push_wipe_pull(project):
    project.dvc("push")  # core.remote = local: a folder, needs nothing
    remote = Path(project.dvc("remote", "list").stdout.split("local")[1].split()[0])
    assert any(remote.rglob("*")), f"nothing pushed to {remote}"
    before = {out: _tree_digest(out) for out in _cached_outs(project)}
    _wipe_cache_and_outs(project)
    project.dvc("pull")
    assert {out: _tree_digest(out) for out in _cached_outs(project)} == before
    assert project.dvc("status").stdout.strip() == UP_TO_DATE


def test_wrong_credentials_fail_with_a_clear_message(project, s3_server):
    secret = "not-the-secret-" + "x" * 25
    env = {"AWS_SECRET_ACCESS_KEY": secret}
    storage = sys.executable, "-m", "granvit_pipeline.storage"
    preflight = project.run(*storage, "ensure-bucket", "--remote", "s3", check=False, env=env)
    assert preflight.returncode == 2
    assert "rejected the credentials" in preflight.stderr
    assert "AWS_SECRET_ACCESS_KEY" in preflight.stderr  # says what to set

    push = project.dvc("push", "-r", "s3", check=False, env=env)
    assert push.returncode != 0
    assert "Forbidden" in push.stderr or "403" in push.stderr
    for proc in (preflight, push):
        assert secret not in proc.stdout + proc.stderr
        assert s3_server.credentials.aws_secret_access_key.get_secret_value() not in proc.stderr
