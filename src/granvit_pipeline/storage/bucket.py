"""Create the S3 bucket of a DVC remote when it is missing (``dvc push`` does not).

The same call is a preflight for ``dvc push``: wrong credentials or an unreachable endpoint fail
here with a message that says what to fix, instead of deep inside DVC's transfer.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from granvit_pipeline.storage.credentials import HOW_TO_SET, S3Credentials

logger = logging.getLogger(__name__)

# rclone answers BucketAlreadyExists for a bucket of its own; AWS answers BucketAlreadyOwnedByYou
# (outside us-east-1) and BucketAlreadyExists only for another account's bucket, which then
# fails on the first write with AccessDenied: the push says so.
EXISTS_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
AUTH_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403", "Forbidden"}
MISSING_CODES = {"404", "NoSuchBucket", "NotFound"}


class StorageError(RuntimeError):
    """The S3 storage cannot be used as configured (message says what to fix)."""


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def s3_client(
    credentials: S3Credentials, endpoint_url: str | None = None, region: str | None = None
) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or "us-east-1",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        **credentials.boto3_kwargs(),
    )


def ensure_bucket(
    bucket: str,
    credentials: S3Credentials,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> bool:
    """Create ``bucket`` if it does not exist; returns True when it was created."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    where = endpoint_url or "AWS S3"
    client = s3_client(credentials, endpoint_url, region)
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except EndpointConnectionError as exc:
        raise StorageError(f"cannot reach the S3 endpoint {where} ({exc})") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in AUTH_CODES:
            raise _auth_error(bucket, where, code, credentials) from None
        if code not in MISSING_CODES:
            raise StorageError(f"S3 {where}: bucket {bucket!r}: {code or exc}") from None
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in EXISTS_CODES:  # created in between, or rclone's answer for its own
            return False
        if code in AUTH_CODES:
            raise _auth_error(bucket, where, code, credentials) from None
        raise StorageError(f"S3 {where}: cannot create bucket {bucket!r}: {code}") from None
    logger.debug("Created bucket %r on %s", bucket, where)
    return True


def _auth_error(bucket: str, where: str, code: str, credentials: S3Credentials) -> StorageError:
    return StorageError(
        f"S3 {where} rejected the credentials for bucket {bucket!r} ({code}); access key id "
        f"...{credentials.aws_access_key_id[-4:]} from {credentials.source}: {HOW_TO_SET}"
    )
