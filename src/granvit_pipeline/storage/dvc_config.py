"""Read and write DVC remote settings through DVC's own config API (all levels merged)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from granvit_pipeline.storage.credentials import CredentialsError

SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token")


def _config(project_root: Path) -> Any:
    from dvc.config import Config  # DVC is heavy to import; only these helpers need it

    return Config(dvc_dir=str(Path(project_root) / ".dvc"))


def remote_settings(project_root: Path, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, settings)`` of a DVC remote (default: ``core.remote``), every level merged.

    Raises ``CredentialsError`` when the committed ``.dvc/config`` holds credentials.
    """
    config = _config(project_root)
    committed = config.load_one("repo").get("remote", {})
    leaked = sorted(f"{r}.{k}" for r, conf in committed.items() for k in SECRET_KEYS if k in conf)
    if leaked:
        raise CredentialsError(
            f"credentials in the committed .dvc/config ({', '.join(leaked)}): move them to "
            "`dvc remote modify --local` (.dvc/config.local) or the environment"
        )
    name = name or config["core"].get("remote")
    if not name or name not in config["remote"]:
        known = ", ".join(sorted(config["remote"])) or "none"
        raise KeyError(f"DVC remote {name!r} is not configured (remotes: {known})")
    return name, dict(config["remote"][name])


def set_local_remote_settings(project_root: Path, name: str, **settings: str) -> None:
    """Write settings of remote ``name`` into the git-ignored ``.dvc/config.local``.

    Used for what differs per machine: an S3 ``endpointurl``, credentials, or, in another
    worktree of the repository, the absolute ``url`` of the default local-folder remote
    (its committed ``url`` is relative to the checkout).
    """
    with _config(project_root).edit("local") as conf:
        conf["remote"].setdefault(name, {}).update(settings)
