"""Shared fixtures: repository paths and the real data in ../shared."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".torch_extensions"))


@pytest.fixture(autouse=True)
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the caller's MLflow server nor a leaked run id reaches a test."""
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models are dominated by thread sync: on a shared 2-core box one thread is faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def prompts():
    """The paper's prompt templates."""
    from granvit_pipeline.model.prompts import PromptTemplates

    return PromptTemplates()


@pytest.fixture(scope="module")  # not session: each test directory has its own ``samples``
def tokenizer(samples: list[dict], prompts):
    """A tokenizer trained on the directory's ``samples`` fixture, the prompts and some boxes."""
    from granvit_pipeline.model.box_codec import coordinate_strings, format_box
    from granvit_pipeline.model.tokenizer import train_tokenizer

    texts = [prompts.global_caption, prompts.bbox2caption, prompts.caption2bbox]
    for s in samples:
        texts += [r["text"] for r in s["regions"]] + [s["global_caption"] or ""]
    texts += [format_box([float(a), 0.5, 1.0, 1.0]) for a in coordinate_strings()[:10]]
    return train_tokenizer(texts * 2, vocab_size=1000)


@pytest.fixture
def tiny_config(tokenizer):
    """The tiny preset with the tokenizer's vocabulary."""
    from granvit_pipeline.model.config import fit_vocab, get_preset

    return fit_vocab(get_preset("tiny"), len(tokenizer))


@pytest.fixture
def tiny_model(tiny_config):
    """A tiny GranViT, seeded."""
    import torch

    from granvit_pipeline.model.modeling import GranViT

    torch.manual_seed(0)
    return GranViT(tiny_config)


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
