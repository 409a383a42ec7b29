"""Versioned-data storage around DVC: S3 credentials, bucket creation, a local S3 server.

No Kedro imports. ``python -m granvit_pipeline.storage --help`` is the command line that the
``make`` targets use (``s3-server``, ``s3-bucket``, ``dvc-push``).
"""

from granvit_pipeline.storage.bucket import StorageError, ensure_bucket, s3_client, split_s3_url
from granvit_pipeline.storage.credentials import (
    CredentialsError,
    S3Credentials,
    resolve_credentials,
)
from granvit_pipeline.storage.dvc_config import remote_settings, set_local_remote_settings
from granvit_pipeline.storage.s3_server import RcloneS3Server, ServerError, find_rclone

__all__ = [
    "CredentialsError",
    "RcloneS3Server",
    "S3Credentials",
    "ServerError",
    "StorageError",
    "ensure_bucket",
    "find_rclone",
    "remote_settings",
    "resolve_credentials",
    "s3_client",
    "set_local_remote_settings",
    "split_s3_url",
]
