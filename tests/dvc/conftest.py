"""Fixtures for the DVC tests: an rclone S3 server and a temporary git+DVC copy of the project.

The copy has the project's real ``dvc.yaml`` (deps, params, outs untouched), ``.dvc/config``,
``.dvcignore``, ``.gitignore``, ``conf/base`` and ``src/``; only each stage's ``cmd`` is
replaced by ``fake_stage.py``, which writes the stage's declared outs from its data deps and
params in well under a second (the real training stages take minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from granvit_pipeline.storage import RcloneS3Server, set_local_remote_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_STAGE = Path(__file__).with_name("fake_stage.py")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3Server]:
    with RcloneS3Server(tmp_path_factory.mktemp("s3-data")) as server:
        yield server


@dataclass
class DvcProject:
    """A git repository with the project's DVC set-up; ``run`` calls a command in it."""

    root: Path
    run_log: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        program = str(BIN / args[0]) if (BIN / args[0]).is_file() else args[0]
        proc = subprocess.run(
            [program, *args[1:]],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def dvc(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run("dvc", *args, **kwargs)

    def ran(self) -> list[str]:
        """Stages that fake_stage.py ran since the last call (and clear the log)."""
        text = self.run_log.read_text() if self.run_log.is_file() else ""
        self.run_log.write_text("")
        return text.split()

    def stage_names(self) -> list[str]:
        return list(yaml.safe_load((self.root / "dvc.yaml").read_text())["stages"])

    def outs(self) -> list[Path]:
        stages = yaml.safe_load((self.root / "dvc.yaml").read_text())["stages"]
        found = []
        for spec in stages.values():
            for entry in spec.get("outs", []) + spec.get("metrics", []):
                found.append(self.root / (next(iter(entry)) if isinstance(entry, dict) else entry))
        return found


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.invalid",
        DVC_NO_ANALYTICS="1",
    )  # fmt: skip
    return env


def make_project(root: Path, s3: RcloneS3Server, local_remote: Path) -> DvcProject:
    """Copy the project's DVC set-up into ``root`` (a new git repo) with fake stage commands."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "src", root / "src", ignore=ignore)
    shutil.copytree(REPO_ROOT / "conf" / "base", root / "conf" / "base", ignore=ignore)
    for name in (".gitignore", ".dvcignore", "dvc.yaml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    (root / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO_ROOT / ".dvc" / name, root / ".dvc" / name)
    shutil.copy2(FAKE_STAGE, root / "fake_stage.py")

    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    for name, stage in dvc_yaml["stages"].items():
        stage["cmd"] = f"{sys.executable} fake_stage.py {name}"
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))

    # What differs per machine goes to the git-ignored .dvc/config.local, as for a user.
    set_local_remote_settings(root, "local", url=str(local_remote))
    set_local_remote_settings(root, "s3", endpointurl=s3.endpoint_url)
    project = DvcProject(root, root.parent / f"{root.name}-runs.log", _git_env())
    project.env.update(s3.credentials.env(), FAKE_RUN_LOG=str(project.run_log))
    project.run("git", "init", "--quiet")
    project.run("git", "add", "--all")
    project.run("git", "commit", "--quiet", "-m", "project")
    return project


@pytest.fixture(scope="session")
def make_dvc_project():
    """``make_dvc_project(root, s3_server, local_remote) -> DvcProject`` (see ``make_project``)."""
    return make_project
