"""Shared fixtures: repository paths and the real data in ../shared."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".torch_extensions"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The 128 real COCO 2017 images with their original instance boxes."""
    path = SHARED / "data" / "coco128"
    if not (path / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"shared COCO128 data not found at {path}")
    return path


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runnable copy of the project in ``tmp_path``: its conf (``conf/local`` empty, no
    ``conf/tuned``) and pyproject; the package itself is installed, Kedro only wants ``src/``.
    The test runs from there, so the data it writes stays there."""
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("tuned"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "conf" / "local").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    return tmp_path


def _git_init(path: Path) -> str:
    """Commit the project copy's conf and pyproject in a new git repo; returns the commit."""

    def git(*args: str) -> str:
        cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
        return subprocess.run(cmd, cwd=path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", "conf", "pyproject.toml")
    git("commit", "-q", "-m", "project")
    return git("rev-parse", "HEAD").strip()


@pytest.fixture
def git_init() -> Callable[[Path], str]:
    """``git_init(project)`` makes a project copy a git repo with one commit (its hash)."""
    return _git_init


POSTGRES = os.environ.get(
    "GRANVIT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres() -> str:
    """The PostgreSQL service on 127.0.0.1 (CI has it); skipped where there is none."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(POSTGRES.replace("+psycopg2", "")).close()
    except psycopg2.OperationalError as err:
        pytest.skip(f"no PostgreSQL at {POSTGRES}: {err}")
    return POSTGRES
