"""DVC push/pull vs plain boto3 against a local S3 server (rclone), for shards and loose images.

    .venv/bin/python benchmarks/dvc_transfer.py                        # 20 x 50 MB, 2000 x 8 KB
    .venv/bin/python benchmarks/dvc_transfer.py --tls                  # over HTTPS, like S3
    .venv/bin/python benchmarks/dvc_transfer.py --shards 8 --shard-mb 32 --images 200 --reps 1

Same bytes, same run, same server (``rclone serve s3``, ``--etag-hash MD5``, data on local
disk), same parallelism (``--jobs`` threads for boto3, ``dvc push/pull --jobs`` for DVC).
boto3: ``upload_file``/``download_file`` of every file. DVC: ``dvc push``/``dvc pull`` through
its Python API (the CLI adds its ~1-2 s start-up, printed separately), after ``dvc add`` (local
hashing and caching, also printed). Each push goes to an empty prefix; each pull starts from an
empty cache and workspace and is fetch (the transfer) + checkout (cache -> workspace, a copy
with the default ``cache.type``). Best of ``--reps`` runs, since the machine is shared.
Prints MB/s and DVC/boto3 (goal >= 0.8 for shards) and how much slower loose images move.
``s3fs put`` is DVC's own transport without DVC (``S3FileSystem.put`` of the same files, same
batch size): the ceiling a DVC push can reach, since DVC adds its bookkeeping on top of it.

Plain HTTP (the default) is the worst case for DVC: botocore then signs every payload with
SHA-256, and s3fs does that (and its copies) in its one event-loop thread while boto3 spreads it
over its threads. ``--tls`` serves HTTPS with a throw-away self-signed certificate for 127.0.0.1
(trusted through ``AWS_CA_BUNDLE``), as every real S3 endpoint is: payloads go unsigned there.
It also sets ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` for both clients, since over
HTTPS botocore otherwise streams uploads aws-chunked with a trailing checksum, which rclone
refuses (``MissingContentLength``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from granvit_pipeline.storage import RcloneS3Server, ensure_bucket, s3_client
from granvit_pipeline.storage.dvc_config import set_local_remote_settings

BUCKET = "bench"


class TlsRcloneS3Server(RcloneS3Server):
    """``rclone serve s3`` over HTTPS with the given certificate and key."""

    def __init__(self, data_dir: Path, cert: Path, key: Path) -> None:
        super().__init__(data_dir)
        self.cert, self.key = cert, key

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [*super().command(), "--cert", str(self.cert), "--key", str(self.key)]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A one-day certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    return cert_path, key_path


def _write_files(folder: Path, count: int, size: int) -> int:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{i:06d}.bin").write_bytes(os.urandom(size))  # incompressible, like JPEG/PNG
    return count * size


def _timed(fn) -> float:
    """Seconds ``fn`` takes, from a clean page cache state: without the sync, whichever transfer
    runs next pays for flushing the previous one's GBs of dirty pages to disk."""
    os.sync()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _boto3(client, folder: Path, prefix: str, jobs: int) -> tuple[float, float]:
    """Upload then download every file of ``folder`` with ``jobs`` threads: (up s, down s)."""
    files = sorted(folder.iterdir())
    back = folder.with_name(folder.name + "-boto3")
    back.mkdir()

    def put(f: Path) -> None:
        client.upload_file(str(f), BUCKET, f"{prefix}/{f.name}")

    def get(f: Path) -> None:
        client.download_file(BUCKET, f"{prefix}/{f.name}", str(back / f.name))

    with ThreadPoolExecutor(jobs) as pool:
        up = _timed(lambda: list(pool.map(put, files)))
        down = _timed(lambda: list(pool.map(get, files)))
    shutil.rmtree(back)
    return up, down


def _s3fs_put(server: RcloneS3Server, folder: Path, prefix: str, jobs: int) -> float:
    """Seconds to upload ``folder`` with s3fs alone, batched like ``dvc push --jobs``."""
    import s3fs

    creds = server.credentials
    fs = s3fs.S3FileSystem(
        key=creds.aws_access_key_id, secret=creds.aws_secret_access_key.get_secret_value(),
        client_kwargs={"endpoint_url": server.endpoint_url}, skip_instance_cache=True,
    )  # fmt: skip
    files = sorted(folder.iterdir())
    targets = [f"{BUCKET}/{prefix}/{f.name}" for f in files]
    return _timed(lambda: fs.put([str(f) for f in files], targets, batch_size=jobs))


def _dvc(root: Path, folder: Path, server: RcloneS3Server, prefix: str, jobs: int) -> dict:
    """``dvc push`` to an empty remote prefix, then ``dvc pull`` (fetch + checkout) into an
    empty cache and workspace: seconds of each."""
    from dvc.repo import Repo

    creds = server.credentials
    set_local_remote_settings(
        root, "s3", url=f"s3://{BUCKET}/{prefix}", endpointurl=server.endpoint_url,
        access_key_id=creds.aws_access_key_id,
        secret_access_key=creds.aws_secret_access_key.get_secret_value(),
    )  # fmt: skip
    with Repo(str(root)) as repo:
        push = _timed(lambda: repo.push(remote="s3", jobs=jobs))
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(folder)
    with Repo(str(root)) as repo:
        fetch = _timed(lambda: repo.fetch(remote="s3", jobs=jobs))
        checkout = _timed(repo.checkout)
    assert folder.is_dir() and any(folder.iterdir()), "dvc pull restored nothing"
    return {"push": push, "fetch": fetch, "checkout": checkout}


def run_case(name: str, work: Path, server, count: int, size: int, jobs: int, reps: int) -> dict:
    """Best of ``reps`` (the machine is shared: the best run is the least disturbed one)."""
    from dvc.repo import Repo

    root = work / f"dvc-{name}"
    root.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):  # "Initialized DVC repository."
        Repo.init(str(root), no_scm=True).close()
    folder = root / name
    total = _write_files(folder, count, size)
    client = s3_client(server.credentials, server.endpoint_url)
    with Repo(str(root)) as repo:
        add = _timed(lambda: repo.add(str(folder)))
    best: dict[str, float] = {}
    for rep in range(reps):
        up, down = _boto3(client, folder, f"boto3-{name}-{rep}", jobs)
        s3fs_up = _s3fs_put(server, folder, f"s3fs-{name}-{rep}", jobs)
        dvc = _dvc(root, folder, server, f"dvc-{name}-{rep}", jobs)
        times = {"up": up, "down": down, "s3fs_up": s3fs_up, **dvc}
        times["pull"] = times["fetch"] + times["checkout"]
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    mb = total / 1e6
    return {
        "case": name, "files": count, "MB": round(mb, 1), "jobs": jobs, "reps": reps,
        "boto3_up_MBps": mb / best["up"], "boto3_down_MBps": mb / best["down"],
        "dvc_push_MBps": mb / best["push"], "dvc_pull_MBps": mb / best["pull"],
        "push_ratio": best["up"] / best["push"], "s3fs_push_ratio": best["up"] / best["s3fs_up"],
        "pull_ratio": best["down"] / best["pull"],
        "fetch_ratio": best["down"] / best["fetch"], "checkout_s": best["checkout"],
        "dvc_add_s": add, "files_per_s_push": count / best["push"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--shard-mb", type=float, default=50)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-kb", type=float, default=8)  # ~ a 64x64 demo PNG is 7 KB
    parser.add_argument("--jobs", type=int, default=4 * (os.cpu_count() or 1))  # DVC's default
    parser.add_argument("--reps", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed), like S3")
    args = parser.parse_args()
    logging.getLogger("dvc").setLevel(logging.WARNING)

    cli = time.perf_counter()
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "version", "-q"], check=True, capture_output=True)
    cli_startup = time.perf_counter() - cli

    with tempfile.TemporaryDirectory(prefix="dvc_transfer_") as tmp:
        work = Path(tmp)
        if args.tls:
            cert, key = _self_signed(work)
            os.environ["AWS_CA_BUNDLE"] = str(cert)
            os.environ["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
            server = TlsRcloneS3Server(work / "s3", cert, key)
        else:
            server = RcloneS3Server(work / "s3")
        with server:
            ensure_bucket(BUCKET, server.credentials, server.endpoint_url)
            common = args.jobs, args.reps
            rows = [
                run_case("shards", work, server, args.shards, int(args.shard_mb * 1e6), *common),
                run_case("images", work, server, args.images, int(args.image_kb * 1e3), *common),
            ]

    scheme = "HTTPS" if args.tls else "HTTP"
    print(f"\nrclone serve s3 on 127.0.0.1 ({scheme}), {args.jobs} parallel transfers, "
          f"best of {args.reps}; "
          f"`dvc` CLI start-up {cli_startup:.1f} s (not in the DVC times)\n")  # fmt: skip
    print(
        "| case | files x size | boto3 up MB/s | DVC push MB/s | push DVC/boto3 | "
        "s3fs put/boto3 | boto3 down MB/s | DVC pull MB/s | pull DVC/boto3 | "
        "fetch only DVC/boto3 | checkout s | dvc add s |"
    )
    print("|" + " --- |" * 12)
    for r in rows:
        each = r["MB"] / r["files"]
        size = f"{each:.0f} MB" if each >= 1 else f"{each * 1e3:.0f} KB"
        print(
            f"| {r['case']} | {r['files']:,} x {size} | {r['boto3_up_MBps']:.1f} | "
            f"{r['dvc_push_MBps']:.1f} | {r['push_ratio']:.2f} | {r['s3fs_push_ratio']:.2f} | "
            f"{r['boto3_down_MBps']:.1f} | "
            f"{r['dvc_pull_MBps']:.1f} | {r['pull_ratio']:.2f} | {r['fetch_ratio']:.2f} | "
            f"{r['checkout_s']:.1f} | {r['dvc_add_s']:.1f} |"
        )
    shards, images = rows
    push = shards["dvc_push_MBps"] / images["dvc_push_MBps"]
    pull = shards["dvc_pull_MBps"] / images["dvc_pull_MBps"]
    print(f"\nper MB, DVC moves loose images {push:.0f}x (push) and {pull:.0f}x (pull) slower")
    if args.json:
        args.json.write_text(json.dumps({"cli_startup_s": cli_startup, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
