"""granvit_pipeline.storage: credentials, DVC remote config, bucket creation, the rclone server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from granvit_pipeline.storage import (
    CredentialsError,
    RcloneS3Server,
    S3Credentials,
    StorageError,
    ensure_bucket,
    remote_settings,
    resolve_credentials,
    s3_client,
    set_local_remote_settings,
)
from granvit_pipeline.storage import bucket as bucket_module
from granvit_pipeline.storage.s3_server import free_port

REPO = Path(__file__).resolve().parents[2]
ENV = {"AWS_ACCESS_KEY_ID": "ENVKEY0001", "AWS_SECRET_ACCESS_KEY": "env-secret"}


def _dvc_dir(root: Path, config: str = "") -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text(config or (REPO / ".dvc" / "config").read_text())
    return root


def test_credentials_from_env_then_credentials_yml_then_dvc_config_local(tmp_path):
    remote = {"access_key_id": "DVCKEY0001", "secret_access_key": "dvc-secret"}
    assert resolve_credentials(tmp_path, remote, ENV).source == "env"
    (tmp_path / "conf" / "local").mkdir(parents=True)
    (tmp_path / "conf" / "local" / "credentials.yml").write_text(
        "dvc_s3:\n  aws_access_key_id: FILEKEY001\n  aws_secret_access_key: file-secret\n"
    )
    found = resolve_credentials(tmp_path, remote, {})
    assert (found.aws_access_key_id, found.source) == ("FILEKEY001", "conf/local/credentials.yml")
    (tmp_path / "conf" / "local" / "credentials.yml").unlink()
    assert resolve_credentials(tmp_path, remote, {}).aws_access_key_id == "DVCKEY0001"
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        resolve_credentials(tmp_path, {}, {})


def test_credentials_yml_typo_is_an_error(tmp_path):
    (tmp_path / "conf" / "local").mkdir(parents=True)
    (tmp_path / "conf" / "local" / "credentials.yml").write_text(
        "dvc_s3: {aws_access_key_id: K, aws_secret_acess_key: S}\n"
    )
    with pytest.raises(ValidationError):
        resolve_credentials(tmp_path, {}, {})


def test_secret_never_shows_in_repr():
    creds = S3Credentials(aws_access_key_id="KEY0000001", aws_secret_access_key="hunter2hunter2")
    assert "hunter2" not in repr(creds) + str(creds) + creds.model_dump_json()
    assert creds.env()["AWS_SECRET_ACCESS_KEY"] == "hunter2hunter2"


def test_remote_settings_merge_config_local_and_refuse_committed_credentials(tmp_path):
    root = _dvc_dir(tmp_path / "ok")
    set_local_remote_settings(root, "s3", endpointurl="http://127.0.0.1:1")
    assert (root / ".dvc" / "config.local").is_file()
    name, s3 = remote_settings(root, "s3")
    assert (name, s3["url"], s3["endpointurl"]) == (
        "s3",
        "s3://granvit-dvc/dvcstore",
        "http://127.0.0.1:1",
    )
    leaky = "['remote \"s3\"']\n    url = s3://b\n    secret_access_key = oops\n"
    with pytest.raises(CredentialsError, match="committed"):
        remote_settings(_dvc_dir(tmp_path / "leaky", leaky), "s3")
    with pytest.raises(KeyError, match="nope"):
        remote_settings(root, "nope")


def test_ensure_bucket_creates_when_missing_then_leaves_it(s3_server):
    creds, url = s3_server.credentials, s3_server.endpoint_url
    assert ensure_bucket("fresh-bucket", creds, url) is True
    assert ensure_bucket("fresh-bucket", creds, url) is False
    s3_client(creds, url).head_bucket(Bucket="fresh-bucket")


def test_ensure_bucket_accepts_bucket_already_exists(s3_server, monkeypatch):
    """A bucket created between the check and the create: rclone answers BucketAlreadyExists."""
    creds, url = s3_server.credentials, s3_server.endpoint_url
    ensure_bucket("raced", creds, url)
    real = s3_client(creds, url)

    class HeadSaysMissing:
        def head_bucket(self, **kwargs):
            raise ClientError({"Error": {"Code": "404"}}, "HeadBucket")

        def create_bucket(self, **kwargs):
            return real.create_bucket(**kwargs)

    monkeypatch.setattr(bucket_module, "s3_client", lambda *a, **k: HeadSaysMissing())
    with pytest.raises(ClientError, match="BucketAlreadyExists"):
        real.create_bucket(Bucket="raced")
    assert ensure_bucket("raced", creds, url) is False


def test_wrong_credentials_and_unreachable_endpoint_fail_clearly(s3_server):
    wrong = S3Credentials(
        aws_access_key_id=s3_server.credentials.aws_access_key_id,
        aws_secret_access_key="wrong-secret-wrong-secret",
        source="env",
    )
    with pytest.raises(StorageError, match="rejected the credentials") as info:
        ensure_bucket("any-bucket", wrong, s3_server.endpoint_url)
    message = str(info.value)
    assert "wrong-secret" not in message and wrong.aws_access_key_id not in message
    assert "from env" in message and "AWS_SECRET_ACCESS_KEY" in message
    with pytest.raises(StorageError, match="cannot reach"):
        ensure_bucket("any-bucket", wrong, f"http://127.0.0.1:{free_port()}")


def test_server_restart_after_wiping_its_folder(tmp_path):
    with RcloneS3Server(tmp_path / "s3") as server:
        client = s3_client(server.credentials, server.endpoint_url)
        client.create_bucket(Bucket="wiped")
        client.put_object(Bucket="wiped", Key="k", Body=b"v")
        shutil.rmtree(tmp_path / "s3" / "wiped")
        port = server.port
        server.restart()  # drops rclone's cached listing of the wiped folder
        assert server.port == port
        assert client.list_buckets().get("Buckets", []) == []
    assert not server._answers()


@pytest.mark.slow
def test_serve_command_points_the_remote_at_the_server(tmp_path):
    root = _dvc_dir(tmp_path / "project")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "granvit_pipeline.storage", "--project-root", str(root), "serve",
         "--port", str(port), "--data-dir", str(tmp_path / "s3")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As if started in the background by a script: SIGINT inherited ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    lines: list[str] = []  # read on a thread: the pipe must not fill, the test must not block
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        # Its last line before it waits for Ctrl-C: the bucket exists, the remote points at it.
        while not any("Ctrl-C stops it" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        assert (tmp_path / "s3" / "granvit-dvc").is_dir()  # the remote's bucket
        _, s3 = remote_settings(root, "s3")
        assert s3["endpointurl"] == f"http://127.0.0.1:{port}"
        creds = resolve_credentials(root, s3, {})  # generated, in .dvc/config.local
        assert creds.source == ".dvc/config.local"
        ensure_bucket("granvit-dvc", creds, s3["endpointurl"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("serve did not stop within 60 s of Ctrl-C:\n" + "".join(lines))
        finally:
            reader.join(timeout=5)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert creds.aws_secret_access_key.get_secret_value() not in output
