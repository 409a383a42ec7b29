"""S3 credentials: from the environment or git-ignored local config, never from committed files.

Order: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the environment, then the
``dvc_s3`` entry of ``conf/local/credentials.yml``, then the DVC remote's ``access_key_id``/
``secret_access_key`` in ``.dvc/config.local`` (what ``dvc push`` itself reads). The secret is a
``SecretStr``: it never shows in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

CREDENTIALS_FILE = Path("conf/local/credentials.yml")
CREDENTIALS_KEY = "dvc_s3"  # entry of conf/local/credentials.yml
ENV_ID, ENV_SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"

HOW_TO_SET = (
    f"set {ENV_ID}/{ENV_SECRET}, or `{CREDENTIALS_KEY}: {{aws_access_key_id, "
    f"aws_secret_access_key}}` in {CREDENTIALS_FILE}, or `dvc remote modify --local <remote> "
    "access_key_id/secret_access_key`"
)


class CredentialsError(RuntimeError):
    """No usable S3 credentials, or credentials in a committed file."""


class S3Credentials(BaseModel):
    """One access key pair; ``source`` says where it came from (for messages, not the secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    aws_access_key_id: str = Field(min_length=1)
    aws_secret_access_key: SecretStr
    source: str = "arguments"

    def boto3_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key.get_secret_value(),
        }

    def env(self) -> dict[str, str]:
        """The environment variables that boto3, s3fs and so ``dvc`` read."""
        return {
            ENV_ID: self.aws_access_key_id,
            ENV_SECRET: self.aws_secret_access_key.get_secret_value(),
        }


class _CredentialsEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aws_access_key_id: str = Field(min_length=1)
    aws_secret_access_key: SecretStr


def from_env(environ: Mapping[str, str] | None = None) -> S3Credentials | None:
    env = os.environ if environ is None else environ
    key, secret = env.get(ENV_ID), env.get(ENV_SECRET)
    if key and secret:
        return S3Credentials(aws_access_key_id=key, aws_secret_access_key=secret, source="env")
    return None


def from_credentials_file(project_root: Path) -> S3Credentials | None:
    path = project_root / CREDENTIALS_FILE
    if not path.is_file():
        return None
    entry = (yaml.safe_load(path.read_text()) or {}).get(CREDENTIALS_KEY)
    if entry is None:
        return None
    parsed = _CredentialsEntry.model_validate(entry)  # a typo in a key is an error
    return S3Credentials(**parsed.model_dump(), source=str(CREDENTIALS_FILE))


def from_dvc_remote(remote: Mapping[str, object]) -> S3Credentials | None:
    key, secret = remote.get("access_key_id"), remote.get("secret_access_key")
    if key and secret:
        return S3Credentials(
            aws_access_key_id=str(key),
            aws_secret_access_key=str(secret),
            source=".dvc/config.local",
        )
    return None


def resolve_credentials(
    project_root: Path,
    dvc_remote: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> S3Credentials:
    """The first pair found: environment, conf/local/credentials.yml, .dvc/config.local."""
    for found in (
        from_env(environ),
        from_credentials_file(project_root),
        from_dvc_remote(dvc_remote or {}),
    ):
        if found is not None:
            return found
    raise CredentialsError(f"no S3 credentials: {HOW_TO_SET}")
