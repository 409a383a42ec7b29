"""Kedro datasets for the project's streaming artefacts (region tables, shards, JSON lines).

These are the only place where region data touches disk, so the atomic-write rule lives here:
every save writes into a temporary sibling and renames it over the target at the end.
"""

from granvit_pipeline.datasets.files import (
    FileFolderDataset,
    JSONDataset,
    JSONLinesDataset,
    TextDataset,
)
from granvit_pipeline.datasets.region_table import RegionStream, RegionTable, RegionTableDataset
from granvit_pipeline.datasets.shard_set import ShardPlan, ShardSet, ShardSetDataset

__all__ = [
    "FileFolderDataset",
    "JSONDataset",
    "JSONLinesDataset",
    "RegionStream",
    "RegionTable",
    "RegionTableDataset",
    "ShardPlan",
    "ShardSet",
    "ShardSetDataset",
    "TextDataset",
]
