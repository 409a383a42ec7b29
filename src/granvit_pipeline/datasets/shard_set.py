"""The shard set: WebDataset-style tar shards per split plus ``manifest.json``.

A node returns a :class:`ShardPlan` (lazy shard specs + config); saving it writes the shards
in parallel into a temporary folder that replaces ``path`` atomically
(:func:`granvit_pipeline.regions.shards.write_shards`). ``load()`` gives a :class:`ShardSet`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from granvit_pipeline.regions.shards.format import ShardConfig, read_manifest
from granvit_pipeline.regions.shards.writer import write_shards

if TYPE_CHECKING:
    from granvit_pipeline.regions.shards.reader import ShardDataset


@dataclass
class ShardPlan:
    specs: Iterable[Any]  # regions.shards.ShardSpec, lazily planned
    config: ShardConfig


@dataclass
class ShardSet:
    path: Path
    manifest: dict[str, Any]

    def dataset(self, split: str, **kwargs: Any) -> ShardDataset:
        """A streaming torch ``IterableDataset`` over one split (see ``ShardDataset``)."""
        # Imported here: the reader needs torch, which the data pipeline never loads.
        from granvit_pipeline.regions.shards.reader import ShardDataset

        return ShardDataset(self.path, split, **kwargs)


class ShardSetDataset(AbstractDataset[ShardPlan, ShardSet]):
    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _save(self, data: ShardPlan) -> None:
        write_shards(data.specs, self._path, data.config)

    def _load(self) -> ShardSet:
        if not (self._path / "manifest.json").is_file():
            raise DatasetError(
                f"{self._path}: no shard manifest (run `kedro run --pipelines shard`)"
            )
        return ShardSet(self._path, read_manifest(self._path))

    def _exists(self) -> bool:
        return (self._path / "manifest.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
