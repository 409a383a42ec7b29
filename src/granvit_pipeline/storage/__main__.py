"""Command line for the DVC S3 remote (used by the Makefile).

    python -m granvit_pipeline.storage ensure-bucket [--remote s3]
    python -m granvit_pipeline.storage serve [--remote s3] [--port 9900] [--data-dir ../s3-data]

``ensure-bucket`` creates the remote's bucket when missing and checks the credentials (a no-op
for a non-S3 remote). ``serve`` runs rclone's S3 server in the foreground and points the remote
at it in ``.dvc/config.local`` (endpoint, and credentials when none are set elsewhere).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from granvit_pipeline.storage.bucket import StorageError, ensure_bucket, split_s3_url
from granvit_pipeline.storage.credentials import CredentialsError, resolve_credentials
from granvit_pipeline.storage.dvc_config import remote_settings, set_local_remote_settings
from granvit_pipeline.storage.s3_server import RcloneS3Server, ServerError, random_credentials

logger = logging.getLogger("granvit_pipeline.storage")


def _ensure_bucket(args: argparse.Namespace) -> int:
    name, remote = remote_settings(args.project_root, args.remote)
    if not str(remote.get("url", "")).startswith("s3://"):
        logger.info("DVC remote %r is not on S3 (%s): no bucket to create", name, remote.get("url"))
        return 0
    bucket, _ = split_s3_url(remote["url"])
    credentials = resolve_credentials(args.project_root, remote)
    created = ensure_bucket(bucket, credentials, remote.get("endpointurl"), remote.get("region"))
    where = remote.get("endpointurl") or "AWS S3"
    logger.info("Bucket %r on %s %s", bucket, where, "created" if created else "exists")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM) stop the server cleanly.

    Set explicitly: a process started in the background by a non-interactive shell inherits
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt, so Ctrl-C would not stop it.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _serve(args: argparse.Namespace) -> int:
    name, remote = remote_settings(args.project_root, args.remote)
    try:
        credentials = resolve_credentials(args.project_root, remote)
    except CredentialsError:
        # Stored git-ignored, where `dvc push` finds them too.
        credentials = random_credentials()
        set_local_remote_settings(
            args.project_root,
            name,
            access_key_id=credentials.aws_access_key_id,
            secret_access_key=credentials.aws_secret_access_key.get_secret_value(),
        )
    stop_on_signals()
    server = RcloneS3Server(args.data_dir.resolve(), credentials, port=args.port).start()
    try:
        set_local_remote_settings(args.project_root, name, endpointurl=server.endpoint_url)
        bucket, _ = split_s3_url(remote["url"])
        ensure_bucket(bucket, credentials, server.endpoint_url)
        logger.info(
            "S3 server on %s (data in %s, credentials: %s); remote %r points at it in "
            ".dvc/config.local. Ctrl-C stops it.",
            server.endpoint_url, server.data_dir,
            "generated, in .dvc/config.local" if credentials.source == "generated"
            else credentials.source,
            name,
        )  # fmt: skip
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m granvit_pipeline.storage")
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    sub = parser.add_subparsers(dest="command", required=True)
    bucket = sub.add_parser("ensure-bucket", help="create the remote's bucket when missing")
    bucket.add_argument("--remote", default=None, help="DVC remote (default: core.remote)")
    bucket.set_defaults(func=_ensure_bucket)
    serve = sub.add_parser("serve", help="rclone S3 server on 127.0.0.1 (foreground)")
    serve.add_argument("--remote", default="s3")
    serve.add_argument("--port", type=int, default=9900)
    serve.add_argument("--data-dir", type=Path, default=Path("../s3-data"))
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (CredentialsError, StorageError, ServerError, KeyError, ValueError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
