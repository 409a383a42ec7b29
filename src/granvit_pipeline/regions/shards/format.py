"""The shard format, stated once: names, keys, tar sizes, sample JSON and the manifest.

Layout of a shard directory::

    manifest.json           version, one entry per shard, totals per split, content_hash
    train-000000.tar        <key>.<jpg|png> (original image bytes) + <key>.json, per image
    val-000000.tar ...

``key`` is :func:`sample_key` of the ``image_id`` (hex, no dots: WebDataset groups tar members
by the name before the first dot). ``<key>.json`` is UTF-8 JSON with sorted keys::

    {"global_caption": str | null, "height": int, "image_id": str, "kind": str,
     "regions": [{"iscrowd": bool, "region_id": str, "text": str, "text_is_target": bool,
                  "text_type": str, "x1": float, "y1": float, "x2": float, "y2": float}, ...],
     "source": str, "split": str, "width": int}

Boxes are absolute pixels xyxy (:mod:`granvit_pipeline.regions.boxes`).

We implement the WebDataset *tar convention* with the stdlib :mod:`tarfile` instead of the
``webdataset`` package: we only need the convention and a small reader (rank/worker split,
resume, path-escape refusal), and owning the writer is what lets us make shards byte-identical
(fixed member order, mtime 0, uid/gid 0, empty user names, mode 0o644, ustar format).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.schema import SPLITS

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
SHARD_FORMAT = "webdataset-tar"
TAR_FORMAT = tarfile.USTAR_FORMAT  # fixed; our short flat names never need pax/GNU extensions
JSON_EXT = "json"
IMAGE_EXTS: tuple[str, ...] = ("jpg", "png")
IMAGE_MAGIC: Mapping[str, bytes] = {"jpg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_BLOCK = tarfile.BLOCKSIZE


class ShardConfig(pydantic.BaseModel, extra="forbid"):
    """How images are grouped into shards and how many processes write them."""

    max_shard_bytes: int = pydantic.Field(default=256 * 2**20, gt=0)  # ~100 MB-1 GB at scale
    max_images_per_shard: int | None = pydantic.Field(default=None, ge=1)  # None: size only
    workers: int = pydantic.Field(default=2, ge=1)  # shards written in parallel (processes)


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """One image of a planned shard: where its bytes are and its serialised JSON member."""

    key: str  # sample key, sample_key(image_id)
    image_id: str
    image_path: str
    image_ext: str  # jpg | png
    image_size: int  # bytes, from os.stat at planning time; checked again when written
    json_bytes: bytes  # the <key>.json member, exactly as written
    regions: int


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """A shard to write: its split, its index within the split and its images, in order."""

    split: str
    index: int
    images: tuple[ImageEntry, ...]
    planned_bytes: int  # exact size of the tar file that write_shards produces

    @property
    def name(self) -> str:
        """File name, ``<split>-<index:06d>.tar``."""
        return shard_name(self.split, self.index)

    @property
    def regions(self) -> int:
        """Number of region rows in the shard."""
        return sum(entry.regions for entry in self.images)


def sample_key(image_id: str) -> str:
    """WebDataset key of an image: ``sha1(image_id)`` hex, first 20 characters (no dots)."""
    return hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:20]


def shard_name(split: str, index: int) -> str:
    """``<split>-000000.tar``."""
    return f"{split}-{index:06d}.tar"


def tar_member_bytes(size: int) -> int:
    """Bytes a regular-file member of ``size`` bytes takes in a tar: header + padded data."""
    return _BLOCK + -(-size // _BLOCK) * _BLOCK


def tar_archive_bytes(member_bytes: int) -> int:
    """Size of a finished tar file: members + two zero end blocks, padded to a tar record."""
    total = member_bytes + 2 * _BLOCK
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def encode_json(obj: Any) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, fixed separators, no NaN/inf."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def build_manifest(shards: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Manifest from per-shard entries ``{name, split, images, regions, bytes, sha256}``.

    Shards are listed by split (``SPLITS`` order) then name; ``content_hash`` is the sha256 of
    the lines ``"<name> <sha256>\\n"`` in that order, so it changes when any shard's bytes or
    name change and serves as the data version tag.
    """
    entries = sorted((dict(s) for s in shards), key=lambda s: (SPLITS.index(s["split"]), s["name"]))
    splits = {split: {"shards": 0, "images": 0, "regions": 0, "bytes": 0} for split in SPLITS}
    for entry in entries:
        totals = splits[entry["split"]]
        totals["shards"] += 1
        for name in ("images", "regions", "bytes"):
            totals[name] += entry[name]
    digest = hashlib.sha256("".join(f"{e['name']} {e['sha256']}\n" for e in entries).encode())
    return {
        "version": MANIFEST_VERSION,
        "format": SHARD_FORMAT,
        "content_hash": digest.hexdigest(),
        "shards": entries,
        "splits": splits,
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as written: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode("utf-8")


def read_manifest(shard_dir: Path) -> dict[str, Any]:
    """Load and check ``<shard_dir>/manifest.json``; DataError if missing, unreadable or foreign."""
    path = Path(shard_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(str(path), "manifest", "manifest_missing", "no manifest") from err
    except (OSError, ValueError) as err:
        raise DataError(str(path), "manifest", "manifest_unreadable", str(err)) from err
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        found = manifest.get("version") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(
            str(path),
            "manifest",
            "manifest_version",
            f"expected version {MANIFEST_VERSION}, found {found!r}",
        )
    for number, shard in enumerate(manifest.get("shards", [])):
        name = shard.get("name", "") if isinstance(shard, dict) else ""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise DataError(
                str(path),
                f"shards[{number}]",
                "manifest_shard_name",
                f"unsafe or missing shard name {name!r}",
            )
    return manifest
