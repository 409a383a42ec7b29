"""Write region batches as WebDataset-style tar shards (format: :mod:`.format`).

:func:`plan_shards` streams the region table into :class:`ShardSpec` objects (which images go
into which shard), :func:`write_shards` writes them in parallel into a temporary directory next
to the output, adds the manifest and swaps the directory into place.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import logging
import multiprocessing
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.schema import REGION_SCHEMA, SPLITS
from granvit_pipeline.regions.shards.format import (
    IMAGE_MAGIC,
    JSON_EXT,
    MANIFEST_NAME,
    TAR_FORMAT,
    ImageEntry,
    ShardConfig,
    ShardSpec,
    build_manifest,
    encode_json,
    manifest_bytes,
    sample_key,
    tar_archive_bytes,
    tar_member_bytes,
)

logger = logging.getLogger(__name__)

_SUFFIX_TO_EXT = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
_IMAGE_FIELDS = ("image_id", "source", "kind", "width", "height", "global_caption", "split")
_REGION_FIELDS = (
    "region_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "text",
    "text_type",
    "iscrowd",
    "text_is_target",
)
_HASH_CHUNK = 1 << 20


def _iter_image_rows(batches: Iterable[pa.RecordBatch]) -> Iterator[list[dict[str, Any]]]:
    """Rows grouped by image (contiguous runs of one image_id), across batch boundaries."""
    current: list[dict[str, Any]] = []
    for number, batch in enumerate(batches):
        if not batch.schema.equals(REGION_SCHEMA, check_metadata=False):
            raise DataError(
                "<region batches>",
                f"batch {number}",
                "schema",
                f"expected REGION_SCHEMA, got {batch.schema}",
            )
        for row in batch.to_pylist():
            if current and row["image_id"] != current[0]["image_id"]:
                yield current
                current = []
            current.append(row)
    if current:
        yield current


def _image_entry(rows: list[dict[str, Any]]) -> ImageEntry:
    """Check one image's rows and build its JSON member; stat the image file."""
    first = rows[0]
    image_id, path = first["image_id"], first["image_path"]
    record = f"image_id={image_id!r}"
    for row in rows[1:]:
        differ = [f for f in (*_IMAGE_FIELDS, "image_path") if row[f] != first[f]]
        if differ:
            raise DataError(
                path,
                record,
                "image_fields_differ",
                f"rows of one image disagree on {differ} (region {row['region_id']})",
            )
    if first["split"] not in SPLITS:
        raise DataError(path, record, "unknown_split", f"split {first['split']!r} not in {SPLITS}")
    ext = _SUFFIX_TO_EXT.get(Path(path).suffix.lower())
    if ext is None:
        raise DataError(path, record, "image_format", f"expected one of {list(_SUFFIX_TO_EXT)}")
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise DataError(path, record, "image_missing", f"cannot stat image: {err}") from err
    meta = {name: first[name] for name in _IMAGE_FIELDS}
    meta["regions"] = [{name: row[name] for name in _REGION_FIELDS} for row in rows]
    try:
        json_bytes = encode_json(meta)
    except ValueError as err:
        raise DataError(path, record, "non_finite_value", str(err)) from err
    return ImageEntry(sample_key(image_id), image_id, path, ext, size, json_bytes, len(rows))


@dataclass(slots=True)
class _OpenShard:
    """The shard currently filling for one split."""

    images: list[ImageEntry] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    member_bytes: int = 0

    @staticmethod
    def entry_bytes(entry: ImageEntry) -> int:
        return tar_member_bytes(entry.image_size) + tar_member_bytes(len(entry.json_bytes))

    def fits(self, entry: ImageEntry, cfg: ShardConfig) -> bool:
        """Whether adding ``entry`` keeps the shard within both limits."""
        if cfg.max_images_per_shard is not None and len(self.images) >= cfg.max_images_per_shard:
            return False
        new_size = tar_archive_bytes(self.member_bytes + self.entry_bytes(entry))
        return new_size <= cfg.max_shard_bytes

    def add(self, entry: ImageEntry) -> None:
        if entry.key in self.keys:
            raise DataError(
                entry.image_path,
                f"image_id={entry.image_id!r}",
                "image_not_contiguous",
                "rows of this image are not contiguous (or its key repeats)",
            )
        self.images.append(entry)
        self.keys.add(entry.key)
        self.member_bytes += self.entry_bytes(entry)

    def close(self, split: str, index: int) -> ShardSpec:
        size = tar_archive_bytes(self.member_bytes)
        return ShardSpec(split, index, tuple(self.images), size)


def plan_shards(batches: Iterable[pa.RecordBatch], cfg: ShardConfig) -> Iterator[ShardSpec]:
    """Group contiguous rows by image, route images by split and cut shards by size and count.

    A shard is closed when the next image would take its tar file past ``cfg.max_shard_bytes``
    (exact tar size from the image file size and the JSON size) or past
    ``cfg.max_images_per_shard``. An image larger than the limit alone gets a shard of its own
    (logged). Specs come out as shards close, then the still-open ones in ``SPLITS`` order;
    only the open shard of each split is held in memory. A key repeated within one shard is an
    error; a repeat in a different shard (non-contiguous input) is not detected here.
    """
    open_shards: dict[str, _OpenShard] = {}
    next_index = dict.fromkeys(SPLITS, 0)
    for rows in _iter_image_rows(batches):
        entry = _image_entry(rows)
        split = rows[0]["split"]
        shard = open_shards.setdefault(split, _OpenShard())
        if shard.images and not shard.fits(entry, cfg):
            yield shard.close(split, next_index[split])
            next_index[split] += 1
            shard = open_shards[split] = _OpenShard()
        shard.add(entry)
        if len(shard.images) == 1 and not _OpenShard().fits(entry, cfg):
            logger.warning(
                "image %s (%d bytes) alone exceeds max_shard_bytes=%d; own shard",
                entry.image_path,
                entry.image_size,
                cfg.max_shard_bytes,
            )
    for split in SPLITS:
        if split in open_shards and open_shards[split].images:
            yield open_shards[split].close(split, next_index[split])


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A member header that depends only on name and size (deterministic shards)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _read_image(entry: ImageEntry, shard: str) -> bytes:
    """The image bytes, checked against what planning saw (size) and the format (magic)."""
    record = f"image_id={entry.image_id!r} in {shard}"
    try:
        data = Path(entry.image_path).read_bytes()
    except OSError as err:
        raise DataError(entry.image_path, record, "image_missing", f"cannot read: {err}") from err
    if len(data) != entry.image_size:
        raise DataError(
            entry.image_path,
            record,
            "image_changed",
            f"size {len(data)} bytes, {entry.image_size} when planned",
        )
    if not data.startswith(IMAGE_MAGIC[entry.image_ext]):
        raise DataError(
            entry.image_path,
            record,
            "image_format",
            f"content is not {entry.image_ext} (file signature)",
        )
    return data


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_shard(spec: ShardSpec, directory: Path) -> dict[str, Any]:
    """Write one shard file into ``directory``; return its manifest entry.

    Members are ``<key>.<ext>`` then ``<key>.json`` per image, in spec order. The file is
    written under a ``.partial`` name, fsynced and renamed, so a finished name is a whole file.
    """
    path = Path(directory) / spec.name
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=TAR_FORMAT) as tar:
            for entry in spec.images:
                data = _read_image(entry, spec.name)
                tar.addfile(
                    _tar_info(f"{entry.key}.{entry.image_ext}", len(data)), io.BytesIO(data)
                )
                tar.addfile(
                    _tar_info(f"{entry.key}.{JSON_EXT}", len(entry.json_bytes)),
                    io.BytesIO(entry.json_bytes),
                )
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, path)
    size = path.stat().st_size
    if size != spec.planned_bytes:  # our size arithmetic is part of the contract: say so loudly
        raise RuntimeError(f"{path}: wrote {size} bytes, planned {spec.planned_bytes}")
    return {
        "name": spec.name,
        "split": spec.split,
        "images": len(spec.images),
        "regions": spec.regions,
        "bytes": size,
        "sha256": _sha256_file(path),
    }


def _pool_context() -> multiprocessing.context.BaseContext:
    """Start method for the writer pool: "forkserver" (POSIX), else "spawn"; never "fork".

    Forking a parent that holds threads (pyarrow, torch, Kedro runners) can deadlock the child.
    The fork server preloads this module once per process, so workers start without
    importing pyarrow/pydantic again. Each worker still re-runs the caller's ``__main__``
    script (a top-level ``import torch`` there costs seconds per worker): preloading
    ``__main__`` is broken in CPython < 3.13, https://github.com/python/cpython/issues/126631.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])  # no effect once the server runs
    return context


def _write_parallel(specs: Iterable[ShardSpec], directory: Path, workers: int) -> list[dict]:
    """Write shards in a process pool with at most ``2 * workers`` shards in flight."""
    entries: list[dict[str, Any]] = []
    in_flight: set[cf.Future[dict[str, Any]]] = set()
    context = _pool_context()
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            for spec in specs:
                if len(in_flight) >= 2 * workers:
                    done, in_flight = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                    entries.extend(f.result() for f in done)
                in_flight.add(pool.submit(write_shard, spec, directory))
            entries.extend(f.result() for f in cf.as_completed(in_flight))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return entries


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an old one.

    A directory cannot be replaced by ``os.replace`` when the target is not empty, so the old
    one is first renamed aside (same parent, same filesystem), then removed.
    """
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old)


def write_shards(specs: Iterable[ShardSpec], out_dir: Path, cfg: ShardConfig) -> dict[str, Any]:
    """Write all shards and ``manifest.json``, then atomically put them at ``out_dir``.

    Everything goes to a temporary directory next to ``out_dir`` (``cfg.workers`` processes;
    1 writes in this process); on any error it is removed and ``out_dir`` is left as it was.
    The same specs give byte-identical shards and manifest whatever ``cfg.workers`` is.
    Returns the manifest (see :func:`.format.build_manifest`).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        specs = _unique_names(specs)
        if cfg.workers == 1:
            entries = [write_shard(spec, tmp) for spec in specs]
        else:
            entries = _write_parallel(specs, tmp, cfg.workers)
        manifest = build_manifest(entries)
        (tmp / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    totals = {s: t["images"] for s, t in manifest["splits"].items()}
    logger.info(
        "wrote %d shards to %s (images per split %s, content_hash %s)",
        len(manifest["shards"]),
        out_dir,
        totals,
        manifest["content_hash"][:12],
    )
    return manifest


def _unique_names(specs: Iterable[ShardSpec]) -> Iterator[ShardSpec]:
    """Pass specs through, refusing two shards with the same name (they would overwrite)."""
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"two shard specs named {spec.name}: specs from more than one plan?")
        seen.add(spec.name)
        yield spec
