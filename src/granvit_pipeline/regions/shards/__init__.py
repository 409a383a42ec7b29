"""WebDataset-style tar shards of the region table: the public entry point.

Write::

    specs = plan_shards(batches, cfg)              # which images go into which shard
    manifest = write_shards(specs, out_dir, cfg)   # parallel, atomic; returns the manifest

Read::

    ds = ShardDataset(out_dir, "train", shuffle_buffer=1000, seed=0, rank=r, world_size=n,
                      loop=True)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=list)

The format (member names, sample JSON, manifest) is described in :mod:`.format`, the writer
in :mod:`.writer`, the reader's distribution, shuffling and resume rules in :mod:`.reader`.
``manifest["content_hash"]`` is the data version tag.

The reader's names (:class:`ShardDataset` ...) are imported on first use: the reader needs
torch, which the data pipeline (format and writer only) never loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from granvit_pipeline.regions.shards.format import (
    IMAGE_EXTS,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ImageEntry,
    ShardConfig,
    ShardSpec,
    build_manifest,
    read_manifest,
    sample_key,
    shard_name,
)
from granvit_pipeline.regions.shards.writer import plan_shards, write_shard, write_shards

if TYPE_CHECKING:
    from granvit_pipeline.regions.shards.reader import (
        RawSample,
        ShardDataset,
        decode_sample,
        iter_shard,
    )

_READER_NAMES = frozenset({"RawSample", "ShardDataset", "decode_sample", "iter_shard"})

__all__ = [
    "IMAGE_EXTS",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ImageEntry",
    "RawSample",
    "ShardConfig",
    "ShardDataset",
    "ShardSpec",
    "build_manifest",
    "decode_sample",
    "iter_shard",
    "plan_shards",
    "read_manifest",
    "sample_key",
    "shard_name",
    "write_shard",
    "write_shards",
]


def __getattr__(name: str) -> Any:
    """The reader's names, imported (with torch) when first asked for."""
    if name not in _READER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from granvit_pipeline.regions.shards import reader

    value = getattr(reader, name)
    globals()[name] = value
    return value
