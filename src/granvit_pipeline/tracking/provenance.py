"""Where a run's code and data came from: git commit (+ dirty flag) and the shard data version."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.shard_format import read_manifest

logger = logging.getLogger(__name__)

# MLflow's own tag names, so that its UI shows the commit; `git.dirty` is ours.
TAG_COMMIT = "mlflow.source.git.commit"
TAG_BRANCH = "mlflow.source.git.branch"
TAG_DIRTY = "git.dirty"
TAG_DATA_VERSION = "data.version"


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
