"""Where a run's code and data came from: git commit (+ dirty flag), the shard data version and
the DVC hashes of the data in ``dvc.lock``."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

import yaml

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.shards.format import read_manifest
from granvit_pipeline.tracking.params import flatten_params

logger = logging.getLogger(__name__)

# MLflow's own tag names, so that its UI shows the commit; `git.dirty` is ours.
TAG_COMMIT = "mlflow.source.git.commit"
TAG_BRANCH = "mlflow.source.git.branch"
TAG_DIRTY = "git.dirty"
TAG_DATA_VERSION = "data.version"
TAG_DVC_PREFIX = "dvc."  # dvc.<out path> = its hash in dvc.lock (dvc_lock_tags)
TAG_DVC_LOCK = "dvc.lock_sha256"


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_tags(root: Path) -> dict[str, str]:
    """Commit, branch and whether tracked files differ from it; {} outside a git checkout."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {TAG_COMMIT: commit}
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        tags[TAG_BRANCH] = branch
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags[TAG_DIRTY] = "true" if status else "false"
    return tags


def data_version(shards_dir: Path | None) -> str | None:
    """The shard manifest's ``content_hash`` (None when there are no shards yet)."""
    if shards_dir is None or not (Path(shards_dir) / "manifest.json").is_file():
        return None
    try:
        return str(read_manifest(shards_dir)["content_hash"])
    except (DataError, KeyError) as err:
        logger.warning("no data version from %s: %s", shards_dir, err)
        return None


def _lock_outs(lock: Any) -> dict[str, str]:
    """``{path: hash}`` of every stage's outs in a parsed ``dvc.lock`` (md5 for local outs)."""
    found: dict[str, str] = {}
    stages = lock.get("stages", {}) if isinstance(lock, dict) else {}
    for stage in stages.values():
        for out in stage.get("outs", []) if isinstance(stage, dict) else []:
            digest = out.get("md5") or out.get("etag") or out.get("checksum")
            if out.get("path") and digest:
                found[str(out["path"])] = str(digest)
    return found


def dvc_lock_tags(root: Path) -> dict[str, str]:
    """The data versions that ``dvc.lock`` records: ``dvc.<path>`` = hash of each stage's outs,
    and ``dvc.lock_sha256`` of the file itself; {} without a ``dvc.lock``.

    Outs, not deps: every data dep of a stage is another stage's out, and the code and conf
    deps are in the commit (``mlflow.source.git.commit``). One tag per path, not one JSON
    value: MLflow caps a run tag at 8000 characters, and ``tags.`dvc.<path>` = '...'``
    finds every run of one data version. The lock is read as the run starts: under
    ``dvc repro`` the running stage's own entry is still the previous one.
    """
    path = Path(root) / "dvc.lock"
    if not path.is_file():
        return {}
    text = path.read_bytes()
    tags = {TAG_DVC_LOCK: hashlib.sha256(text).hexdigest()}
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError as err:
        logger.warning("dvc.lock in %s is not YAML (%s): its digest only", root, err)
        return tags
    outs = {TAG_DVC_PREFIX + out: digest for out, digest in _lock_outs(lock).items()}
    tags.update(flatten_params(outs))  # keys within MLflow's rules, like parameter names
    return tags
