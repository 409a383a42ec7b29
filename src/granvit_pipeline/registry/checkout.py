"""A registered version's commit in a temporary git worktree, with its data pulled by DVC.

What ``kedro models reproduce`` needs from git and DVC, without Kedro: a temporary
``git worktree`` at the commit (the user's checkout is never touched), the DVC remote pointed
at the same storage as in the user's checkout, ``dvc pull`` of the data the training reads, and
``kedro run`` of the pipelines there in a child process that imports the worktree's code.

Every failure is a ``ReproduceError`` whose message says what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "granvit_pipeline"
# Environment paths of the caller that stay the caller's (the Makefile sets them relative).
CALLER_PATHS = ("KEDRO_LOGGING_CONFIG", "TORCH_EXTENSIONS_DIR")
TAIL_LINES = 15


class ReproduceError(RuntimeError):
    """A reproduction that cannot start or finish; the message says why and what to do."""


def _run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: int | None = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=dict(env) if env else None, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])


def _git(repo: Path, *args: str) -> str:
    proc = _run(["git", *args], repo)
    if proc.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)} failed in {repo}: {_tail(proc.stderr)}")
    return proc.stdout.strip()


def git_toplevel(path: Path) -> Path:
    """The git repository that holds ``path`` (the project may be a folder of a larger repo)."""
    proc = _run(["git", "rev-parse", "--show-toplevel"], path)
    if proc.returncode != 0:
        raise ReproduceError(f"{path} is not in a git repository: nothing to check out from")
    return Path(proc.stdout.strip()).resolve()


def check_commit(repo: Path, commit: str) -> None:
    """Raise unless ``commit`` is a commit of ``repo`` (fetched, not only named in a tag)."""
    if _run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], repo).returncode != 0:
        raise ReproduceError(
            f"commit {commit} is not in the git repository {repo}: fetch it (`git fetch "
            "<remote>`), or reproduce from a clone that has it"
        )


@contextlib.contextmanager
def worktree(repo: Path, commit: str, keep: bool = False) -> Iterator[Path]:
    """``repo`` at ``commit`` in a new detached worktree in a temporary folder; removed with
    ``git worktree remove`` on exit unless ``keep``."""
    parent = Path(tempfile.mkdtemp(prefix="granvit-reproduce-"))
    path = parent / commit[:12]
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    except ReproduceError:
        shutil.rmtree(parent, ignore_errors=True)
        raise
    logger.info("checked out %s into %s", commit, path)
    try:
        yield path
    finally:
        if keep:
            logger.info("kept the worktree %s (`git worktree remove --force %s`)", path, path)
        else:
            _remove_worktree(repo, path)
            shutil.rmtree(parent, ignore_errors=True)


def _remove_worktree(repo: Path, path: Path) -> None:
    # --force: the pulled data and the run's outputs are untracked files of the worktree.
    proc = _run(["git", "worktree", "remove", "--force", str(path)], repo)
    if proc.returncode != 0:
        logger.warning("could not remove the worktree %s: %s", path, _tail(proc.stderr))
        _run(["git", "worktree", "prune"], repo)


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def point_remote(project: Path, checkout: Path, remote: str | None) -> str:
    """Give ``checkout`` the settings that remote ``remote`` (default: ``core.remote``) has in
    ``project``, in its git-ignored ``.dvc/config.local``; returns the remote's name.

    A worktree has only the committed ``.dvc/config``: a folder remote's relative ``url``
    would point next to the worktree, and an S3 ``endpointurl`` or credentials kept in
    ``.dvc/config.local`` would be missing.
    """
    from granvit_pipeline.storage import (
        CredentialsError,
        remote_settings,
        set_local_remote_settings,
    )

    try:
        name, settings = remote_settings(project, remote)
    except (KeyError, CredentialsError) as err:
        raise ReproduceError(str(err).strip("\"'")) from err
    set_local_remote_settings(checkout, name, **{k: str(v) for k, v in settings.items()})
    return name


def dvc_pull(checkout: Path, targets: Sequence[str], remote: str) -> None:
    """``dvc pull`` of ``targets`` (stages or outs) from ``remote`` into ``checkout``."""
    proc = _run(_dvc("pull", "--remote", remote, *targets), checkout, timeout=None)  # GBs
    if proc.returncode != 0:
        raise ReproduceError(
            f"dvc pull {' '.join(targets)} from remote {remote!r} failed: the data of this "
            f"commit is not there (push it from a checkout that has it: `dvc push --remote "
            f"{remote}`), or the remote is unreachable.\n{_tail(proc.stderr or proc.stdout)}"
        )
    logger.info("pulled %s from DVC remote %r", " ".join(targets), remote)


def child_env(checkout: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``kedro run`` in ``checkout``: its ``src/`` first on the import path,
    so that it and the training processes it starts import the worktree's code, not the
    installed package; no MLflow run id of the caller."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    for key in CALLER_PATHS:  # relative: to the caller's folder, not the worktree
        if env.get(key) and not Path(env[key]).is_absolute():
            env[key] = str(Path(env[key]).resolve())
    paths = [str(checkout / "src"), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


def check_imports_checkout(checkout: Path, env: Mapping[str, str]) -> None:
    """Raise when the worktree has the package but a child process would import another copy
    (a site-packages install that shadows ``PYTHONPATH``)."""
    if not (checkout / "src" / PACKAGE).is_dir():
        logger.warning("%s has no src/%s: the installed package runs", checkout, PACKAGE)
        return
    code = f"import importlib.util; print(importlib.util.find_spec('{PACKAGE}').origin)"
    proc = _run([sys.executable, "-c", code], checkout, env)
    origin = Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None
    if origin is None or not origin.is_relative_to(checkout.resolve()):
        raise ReproduceError(f"the worktree's code would not be imported ({PACKAGE} from {origin})")


def kedro_run(
    checkout: Path, pipelines: Sequence[str], kedro_env: str | None, env: Mapping[str, str]
) -> None:
    """``kedro run --pipelines ...`` in ``checkout``; its output goes to this terminal."""
    args = [sys.executable, "-m", "kedro", "run", "--pipelines", ",".join(pipelines)]
    if kedro_env:
        args += ["--env", kedro_env]
    logger.info("running %s in %s", " ".join(args[2:]), checkout)
    returncode = subprocess.run(args, cwd=checkout, env=dict(env), check=False).returncode
    if returncode != 0:
        raise ReproduceError(
            f"`kedro {' '.join(args[3:])}` failed (exit {returncode}) in {checkout}: see its "
            "output above; --keep keeps the worktree to look into"
        )
