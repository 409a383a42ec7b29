"""Read shards (format: :mod:`.format`) as a torch ``IterableDataset`` for training.

**Distribution.** Each (rank, DataLoader worker) pair is one *consumer*: consumer
``c = rank * num_workers + worker_id`` of ``C = world_size * num_workers``. With at least ``C``
shards in the split, consumer ``c`` reads shards ``c, c + C, c + 2C, ...`` (round-robin on the
shard index; ranks may then see a few samples more or fewer than others). With fewer shards
than consumers, every consumer reads every shard and keeps samples ``c, c + C, ...`` of the
split's sample stream (sample-level striding): no sample is lost or duplicated, at the price
of each consumer reading all of the split's bytes.

**Shuffling** (only when ``shuffle_buffer > 0``): the shard order is permuted per epoch with
an RNG seeded by ``(seed, epoch)`` (the same on every consumer, so the assignment above still
partitions the data), then each consumer draws from a buffer of ``shuffle_buffer`` samples
with an RNG seeded by ``(seed, epoch, rank, worker_id)``.

**Determinism and resume.** The sample stream of a consumer depends only on the shard set,
``seed``, ``epoch``, ``rank``, ``world_size`` and the DataLoader's ``num_workers``. So a
trainer resumes exactly with :meth:`ShardDataset.resume` (number of batches already taken from
a DataLoader over this dataset, and the batch size) or :meth:`ShardDataset.skip` (samples of
each consumer's stream); skipped samples are read but not decoded.
:meth:`ShardDataset.set_epoch` must be called before the DataLoader creates its iterator; with
``persistent_workers=True`` the workers keep the epoch they started with, so prefer
``loop=True`` (epochs ``epoch, epoch + 1, ...`` in one endless stream) for step-based training.

**Safety.** Tars are read in streaming mode (``"r|"``), members in memory, nothing is ever
extracted to disk; members that are not regular files or whose names are absolute, contain
``..`` or ``/`` (our shards are flat) are refused with a :class:`DataError`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.schema import SPLITS
from granvit_pipeline.regions.shards.format import IMAGE_EXTS, JSON_EXT, read_manifest, sample_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawSample:
    """One sample as stored: the shard it came from, its key and its two members' bytes."""

    shard: str
    key: str
    json_bytes: bytes
    image_bytes: bytes
    image_ext: str


def _member_key_ext(shard: str, member: tarfile.TarInfo) -> tuple[str, str]:
    """Refuse unsafe or foreign members; return ``(key, ext)`` of a safe one."""
    name, record = member.name, f"member {member.name!r}"
    if name.startswith(("/", "\\")):
        raise DataError(shard, record, "absolute_path", "absolute member names are refused")
    if ".." in name:
        raise DataError(shard, record, "path_escape", "member names with '..' are refused")
    if "/" in name or "\\" in name:
        raise DataError(shard, record, "nested_path", "shards are flat; '/' is refused")
    if not member.isreg():
        raise DataError(
            shard, record, "not_regular_file", "links, directories and devices are refused"
        )
    key, _, ext = name.partition(".")
    if not key or ext not in (JSON_EXT, *IMAGE_EXTS):
        raise DataError(
            shard, record, "unknown_member", f"expected <key>.<{'|'.join((JSON_EXT, *IMAGE_EXTS))}>"
        )
    return key, ext


def _assemble(shard: str, key: str, parts: dict[str, bytes]) -> RawSample:
    images = [ext for ext in IMAGE_EXTS if ext in parts]
    if JSON_EXT not in parts or len(images) != 1:
        raise DataError(
            shard,
            f"key {key!r}",
            "sample_incomplete",
            f"need one image ({'|'.join(IMAGE_EXTS)}) and one json, found {sorted(parts)}",
        )
    return RawSample(shard, key, parts[JSON_EXT], parts[images[0]], images[0])


def iter_shard(path: Path) -> Iterator[RawSample]:
    """Samples of one shard, in stored order, read as a stream (never extracted to disk)."""
    shard = str(path)
    key: str | None = None
    parts: dict[str, bytes] = {}
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r|") as tar:
            for member in tar:
                member_key, ext = _member_key_ext(shard, member)
                if member_key != key:
                    if key is not None:
                        yield _assemble(shard, key, parts)
                    if member_key in seen:
                        raise DataError(
                            shard,
                            f"key {member_key!r}",
                            "key_not_contiguous",
                            "members of one sample must be adjacent",
                        )
                    key, parts = member_key, {}
                    seen.add(key)
                if ext in parts:
                    raise DataError(
                        shard, f"member {member.name!r}", "duplicate_member", "member appears twice"
                    )
                parts[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except tarfile.TarError as err:
        raise DataError(shard, "archive", "tar_corrupt", str(err)) from err
    if key is not None:
        yield _assemble(shard, key, parts)


def _rng(*parts: int) -> random.Random:
    """An RNG seeded from a tuple of ints (stable across runs, machines and Python versions)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _shuffle(samples: Iterator[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """Reservoir-style shuffle buffer: emit a random buffered sample for each new one."""
    buffer: list[RawSample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = sample
    rng.shuffle(buffer)
    yield from buffer


def _iter_shards(paths: list[Path]) -> Iterator[RawSample]:
    for path in paths:
        yield from iter_shard(path)


def decode_sample(raw: RawSample, decode: bool = True) -> dict[str, Any]:
    """The JSON fields plus ``__key__`` and ``image`` (PIL RGB) or ``image_bytes``/``image_ext``."""
    record = f"key {raw.key!r}"
    try:
        sample = json.loads(raw.json_bytes.decode("utf-8"))
    except ValueError as err:
        raise DataError(raw.shard, record, "bad_json", str(err)) from err
    if not isinstance(sample, dict) or sample_key(str(sample.get("image_id"))) != raw.key:
        raise DataError(raw.shard, record, "key_mismatch", "json image_id does not hash to key")
    sample["__key__"] = raw.key
    if not decode:
        sample["image_bytes"], sample["image_ext"] = raw.image_bytes, raw.image_ext
        return sample
    try:
        with Image.open(io.BytesIO(raw.image_bytes)) as image:
            size = image.size
            sample["image"] = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(raw.shard, record, "image_decode", str(err)) from err
    if size != (sample.get("width"), sample.get("height")):
        raise DataError(
            raw.shard,
            record,
            "image_size_mismatch",
            f"image is {size}, json says {(sample.get('width'), sample.get('height'))}",
        )
    return sample


class ShardDataset(IterableDataset):
    """Samples of one split of a shard directory; see the module docstring for the rules.

    Each item is the sample JSON (``image_id, source, kind, width, height, global_caption,
    split, regions``) plus ``__key__`` and ``image`` (PIL RGB), or ``image_bytes`` and
    ``image_ext`` when ``decode=False``. Use a ``collate_fn`` that keeps PIL images.
    """

    def __init__(
        self,
        shard_dir: Path,
        split: str,
        *,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        decode: bool = True,
        loop: bool = False,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.shard_dir, self.split = Path(shard_dir), split
        self.shuffle_buffer, self.seed, self.decode, self.loop = shuffle_buffer, seed, decode, loop
        self.rank, self.world_size = rank, world_size
        manifest = read_manifest(self.shard_dir)
        self.content_hash: str = manifest["content_hash"]
        self.num_samples: int = manifest["splits"][split]["images"]  # the whole split
        self.shards: tuple[Path, ...] = tuple(self._checked_shards(manifest))
        self.epoch = 0
        self._skip = 0
        self._resume: tuple[int, int] | None = None

    def _checked_shards(self, manifest: dict[str, Any]) -> Iterator[Path]:
        """Shard paths of the split; refuse missing files and sizes unlike the manifest."""
        for entry in manifest["shards"]:
            if entry["split"] != self.split:
                continue
            path = self.shard_dir / entry["name"]
            if not path.is_file():
                raise DataError(str(path), "shard", "shard_missing", "listed in manifest, absent")
            if path.stat().st_size != entry["bytes"]:
                raise DataError(
                    str(path),
                    "shard",
                    "shard_size_mismatch",
                    f"{path.stat().st_size} bytes, manifest says {entry['bytes']}",
                )
            yield path

    def set_epoch(self, epoch: int) -> None:
        """Epoch for shuffling (and the first epoch when ``loop=True``); call before iterating."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def skip(self, n: int) -> None:
        """Start each consumer's stream (from epoch :attr:`epoch`) after its first ``n`` samples.

        A consumer is this rank (``num_workers=0``) or one of its DataLoader workers.
        """
        if n < 0:
            raise ValueError(f"cannot skip {n} samples")
        self._skip, self._resume = n, None

    def resume(self, batches: int, batch_size: int) -> None:
        """Continue exactly after ``batches`` batches taken from a DataLoader over this dataset.

        A DataLoader (``in_order=True``, the default) takes batch ``j`` from worker
        ``j % num_workers``, so worker ``w`` had produced ``ceil((batches - w) / num_workers)``
        full batches; a fresh DataLoader starts at worker 0, so its worker ``w`` continues the
        stream of original worker ``(w + batches) % num_workers``. Exact with ``loop=True``
        (streams never end) and, with ``loop=False``, while no worker has run out of samples.
        Use ``batch_size=1`` for a DataLoader with ``batch_size=None``; the DataLoader's
        ``num_workers`` must be the same as in the original run.
        """
        if batches < 0 or batch_size < 1:
            raise ValueError(f"need batches >= 0 and batch_size >= 1, got {batches}, {batch_size}")
        self._skip, self._resume = 0, (batches, batch_size)

    def _resume_point(self, worker_id: int, num_workers: int) -> tuple[int, int]:
        """``(stream worker, samples to skip)`` for DataLoader worker ``worker_id``.

        A fresh DataLoader takes its first batch from worker 0, but batch ``batches`` came
        from worker ``batches % num_workers`` in the original run; so worker ``w`` replays
        the stream of original worker ``(w + batches) % num_workers`` from where it stopped.
        """
        if self._resume is None:
            return worker_id, self._skip
        batches, batch_size = self._resume
        stream_worker = (worker_id + batches) % num_workers
        done = max(0, -(-(batches - stream_worker) // num_workers))
        return stream_worker, done * batch_size

    def _epoch_stream(self, epoch: int, worker_id: int, num_workers: int) -> Iterator[RawSample]:
        """One epoch of raw samples for consumer (rank, worker_id)."""
        consumer = self.rank * num_workers + worker_id
        consumers = self.world_size * num_workers
        shards = list(self.shards)
        if self.shuffle_buffer > 0:
            _rng(self.seed, epoch).shuffle(shards)
        if len(shards) >= consumers:
            samples = _iter_shards(shards[consumer::consumers])
        else:
            samples = itertools.islice(_iter_shards(shards), consumer, None, consumers)
        if self.shuffle_buffer > 0:
            rng = _rng(self.seed, epoch, self.rank, worker_id)
            samples = _shuffle(samples, self.shuffle_buffer, rng)
        return samples

    def _stream(self, worker_id: int, num_workers: int) -> Iterator[RawSample]:
        """Epoch :attr:`epoch`, then (``loop=True``) the following epochs, forever."""
        epoch = self.epoch
        while True:
            count = 0
            for sample in self._epoch_stream(epoch, worker_id, num_workers):
                count += 1
                yield sample
            if not self.loop:
                return
            if count == 0:
                raise ValueError(
                    f"{self.shard_dir}: split {self.split!r} has no samples for "
                    f"rank {self.rank} worker {worker_id}; loop=True would spin"
                )
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Samples of this consumer, decoded (see the class docstring)."""
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info else (0, 1)
        stream_worker, skip = self._resume_point(worker_id, num_workers)
        stream = itertools.islice(self._stream(stream_worker, num_workers), skip, None)
        for raw in stream:
            yield decode_sample(raw, self.decode)
