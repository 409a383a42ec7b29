"""WebDataset-style tar shards of the region table: the public entry point.

Write::

    specs = plan_shards(batches, cfg)              # which images go into which shard
    manifest = write_shards(specs, out_dir, cfg)   # parallel, atomic; returns the manifest

Read::

    ds = ShardDataset(out_dir, "train", shuffle_buffer=1000, seed=0, rank=r, world_size=n,
                      loop=True)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=list)

The format (member names, sample JSON, manifest) is described in :mod:`.shard_format`, the
writer in :mod:`.shard_writer`, the reader's distribution, shuffling and resume rules in
:mod:`.shard_reader`. ``manifest["content_hash"]`` is the data version tag.
"""

from __future__ import annotations

from granvit_pipeline.regions.shard_format import (
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
from granvit_pipeline.regions.shard_reader import (
    RawSample,
    ShardDataset,
    decode_sample,
    iter_shard,
)
from granvit_pipeline.regions.shard_writer import plan_shards, write_shard, write_shards

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
