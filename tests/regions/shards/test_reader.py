"""ShardDataset: every sample once across ranks x workers, shuffling, resume, tar safety."""

from __future__ import annotations

import io
import itertools
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from torch.utils.data import DataLoader

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.schema import region_batch
from granvit_pipeline.regions.shards import (
    ShardConfig,
    ShardDataset,
    build_manifest,
    iter_shard,
    plan_shards,
    read_manifest,
    sample_key,
    write_shards,
)
from granvit_pipeline.regions.shards.format import manifest_bytes


def build_shards(root: Path, n_images: int, per_shard: int, split: str = "train") -> Path:
    """``n_images`` small PNG/JPEG images of one split, ``per_shard`` per shard; the shard dir."""
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n_images):
        ext, fmt = ("png", "PNG") if i % 2 else ("jpg", "JPEG")
        path = root / "img" / f"{i}.{ext}"
        Image.new("RGB", (20 + i % 3, 10 + i % 4), (i % 256, 90, 30)).save(path, fmt)
        for r in range(1 + i % 2):
            rows.append(
                {
                    "image_id": f"t/{i}",
                    "source": "t",
                    "kind": "natural",
                    "width": 20 + i % 3,
                    "height": 10 + i % 4,
                    "region_id": f"t/{i}#{r}",
                    "x1": 0.0,
                    "y1": 1.0,
                    "x2": 5.5,
                    "y2": 9.0,
                    "text": f"r{r}",
                    "text_type": "category",
                    "global_caption": "g",
                    "split": split,
                    "image_path": str(path),
                    "iscrowd": False,
                    "text_is_target": True,
                }
            )
    cfg = ShardConfig(max_images_per_shard=per_shard, workers=1)
    write_shards(plan_shards([region_batch(rows)], cfg), root / "shards", cfg)
    return root / "shards"


def ids(samples: Any) -> list[str]:
    return [s["image_id"] for s in samples]


def as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """collate_fn that keeps samples as they are (module level: picklable for workers)."""
    return batch


@pytest.mark.parametrize(
    ("n_images", "per_shard"),
    [(23, 2), (9, 4), (7, 7)],  # 12 shards >= 4 consumers; 3 shards and 1 shard < 4 consumers
)
def test_every_sample_exactly_once_for_two_ranks_times_two_workers(
    tmp_path: Path, n_images: int, per_shard: int
) -> None:
    shards = build_shards(tmp_path, n_images, per_shard)
    seen: Counter[str] = Counter()
    for rank in range(2):
        ds = ShardDataset(shards, "train", rank=rank, world_size=2, decode=False)
        loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=as_list)
        got = [s["image_id"] for batch in loader for s in batch]
        assert got, f"rank {rank} got nothing"
        seen.update(got)
    assert seen == Counter(f"t/{i}" for i in range(n_images))


def test_samples_carry_decoded_image_and_regions(tmp_path: Path) -> None:
    shards = build_shards(tmp_path, 4, 3)
    decoded = list(ShardDataset(shards, "train"))
    raw = list(ShardDataset(shards, "train", decode=False))
    assert ids(decoded) == ids(raw) == [f"t/{i}" for i in range(4)]
    for i, (sample, stored) in enumerate(zip(decoded, raw, strict=True)):
        assert sample["__key__"] == sample_key(f"t/{i}")
        assert sample["image"].mode == "RGB"
        assert (
            sample["image"].size == (sample["width"], sample["height"]) == (20 + i % 3, 10 + i % 4)
        )
        ext = "png" if i % 2 else "jpg"
        assert stored["image_ext"] == ext
        assert stored["image_bytes"] == (tmp_path / "img" / f"{i}.{ext}").read_bytes()
        assert [r["region_id"] for r in sample["regions"]] == [
            f"t/{i}#{r}" for r in range(1 + i % 2)
        ]
        assert sample["regions"][0]["x2"] == 5.5 and sample["global_caption"] == "g"
    assert list(ShardDataset(shards, "val")) == []


def test_shuffle_is_deterministic_and_changes_with_epoch(tmp_path: Path) -> None:
    shards = build_shards(tmp_path, 30, 4)

    def order(epoch: int, seed: int = 7) -> list[str]:
        ds = ShardDataset(shards, "train", shuffle_buffer=8, seed=seed, decode=False)
        ds.set_epoch(epoch)
        return ids(ds)

    plain = ids(ShardDataset(shards, "train", decode=False))
    assert order(0) == order(0)
    assert order(0) != order(1) and order(0) != plain and order(0, seed=8) != order(0)
    assert sorted(order(0)) == sorted(order(1)) == sorted(plain)


def test_loop_runs_epoch_after_epoch(tmp_path: Path) -> None:
    shards = build_shards(tmp_path, 6, 2)
    ds = ShardDataset(shards, "train", shuffle_buffer=4, seed=3, loop=True, decode=False)
    stream = ids(itertools.islice(ds, 18))
    expected = []
    for epoch in range(3):
        once = ShardDataset(shards, "train", shuffle_buffer=4, seed=3, decode=False)
        once.set_epoch(epoch)
        expected += ids(once)
    assert stream == expected


@pytest.mark.parametrize("k", [0, 1, 5, 13])
def test_skip_k_then_rest_equals_full_stream(tmp_path: Path, k: int) -> None:
    shards = build_shards(tmp_path, 10, 3)
    full = ids(ShardDataset(shards, "train", shuffle_buffer=4, seed=1, decode=False))
    ds = ShardDataset(shards, "train", shuffle_buffer=4, seed=1, decode=False)
    ds.skip(k)
    assert full[:k] + ids(ds) == full  # k = 13 > 10 samples: nothing left
    looped = ShardDataset(shards, "train", shuffle_buffer=4, seed=1, loop=True, decode=False)
    whole = ids(itertools.islice(looped, 25))
    looped.skip(k)
    assert ids(itertools.islice(looped, 25 - k)) == whole[k:]


def test_resume_after_batches_with_dataloader_workers(tmp_path: Path) -> None:
    shards = build_shards(tmp_path, 11, 2)

    def batches(resume_at: int, count: int) -> list[list[str]]:
        ds = ShardDataset(
            shards, "train", shuffle_buffer=3, seed=5, rank=1, world_size=2, decode=False, loop=True
        )
        ds.resume(batches=resume_at, batch_size=3)
        loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=as_list)
        return [ids(b) for b in itertools.islice(loader, count)]

    full = batches(0, 9)
    assert batches(5, 4) == full[5:]
    assert batches(4, 5) == full[4:]


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def reg(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


GOOD_KEY = sample_key("t/0")
GOOD_JSON = b'{"image_id":"t/0","width":1,"height":1,"regions":[]}'


@pytest.mark.parametrize(
    ("member", "rule"),
    [
        (reg("../evil.json"), "path_escape"),
        (reg("/abs.json"), "absolute_path"),
        (reg("sub/x.json"), "nested_path"),
        (link("x.json", tarfile.SYMTYPE, "/etc/passwd"), "not_regular_file"),
        (link("x.png", tarfile.LNKTYPE, f"{GOOD_KEY}.json"), "not_regular_file"),
        (link("x.png", tarfile.CHRTYPE, ""), "not_regular_file"),
        (reg("x.exe"), "unknown_member"),
    ],
)
def test_unsafe_members_are_refused_naming_shard_and_member(
    tmp_path: Path, member: tarfile.TarInfo, rule: str
) -> None:
    shard = write_tar(
        tmp_path / "train-000000.tar", [(reg(f"{GOOD_KEY}.json"), GOOD_JSON), (member, b"")]
    )
    with pytest.raises(DataError, match=rf"train-000000\.tar: member '{member.name}': \[{rule}\]"):
        list(iter_shard(shard))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000000.tar"]  # nothing extracted
    assert not (tmp_path.parent / "evil.json").exists()


def test_crafted_shard_is_refused_through_the_dataset(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "train-000000.tar", [(reg("../evil.json"), GOOD_JSON)])
    entry = {
        "name": shard.name,
        "split": "train",
        "images": 1,
        "regions": 0,
        "bytes": shard.stat().st_size,
        "sha256": "0" * 64,
    }
    (tmp_path / "manifest.json").write_bytes(manifest_bytes(build_manifest([entry])))
    with pytest.raises(DataError, match=r"member '\.\./evil\.json': \[path_escape\]"):
        list(ShardDataset(tmp_path, "train"))


@pytest.mark.parametrize("present", ["json", "png"])
def test_sample_missing_image_or_json_names_shard_and_key(tmp_path: Path, present: str) -> None:
    data = GOOD_JSON if present == "json" else b"\x89PNG\r\n\x1a\n"
    shard = write_tar(tmp_path / "val-000003.tar", [(reg(f"{GOOD_KEY}.{present}"), data)])
    with pytest.raises(
        DataError, match=rf"val-000003\.tar: key '{GOOD_KEY}': \[sample_incomplete\]"
    ):
        list(iter_shard(shard))


def test_tampered_or_missing_shard_is_refused(tmp_path: Path) -> None:
    shards = build_shards(tmp_path, 4, 2)
    name = read_manifest(shards)["shards"][1]["name"]
    with (shards / name).open("ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(DataError, match=rf"{name}: shard: \[shard_size_mismatch\]"):
        ShardDataset(shards, "train")
    (shards / name).unlink()
    with pytest.raises(DataError, match=r"\[shard_missing\]"):
        ShardDataset(shards, "train")
