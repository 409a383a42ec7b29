"""Shard planning and writing: sizes, routing, layout, determinism, manifest, atomicity."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pydantic
import pytest
from PIL import Image

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.schema import region_batch
from granvit_pipeline.regions.shards import (
    ImageEntry,
    ShardConfig,
    plan_shards,
    read_manifest,
    sample_key,
    write_shards,
)
from granvit_pipeline.regions.shards.format import tar_archive_bytes, tar_member_bytes


def make_images(root: Path, splits: list[str], rows_per_batch: int = 5) -> list[pa.RecordBatch]:
    """One small real image per entry of ``splits`` (PNG and JPEG alternate), 1-3 regions each.

    Rows go into batches of ``rows_per_batch`` so that images straddle batch boundaries.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, split in enumerate(splits):
        ext, fmt = ("png", "PNG") if i % 2 == 0 else ("jpg", "JPEG")
        width, height = 24 + i % 7, 16 + i % 5
        path = root / f"img{i:04d}.{ext}"
        Image.new("RGB", (width, height), (i * 37 % 256, i * 11 % 256, 200)).save(path, fmt)
        image_id = f"demo/{i}"
        for r in range(1 + i % 3):
            rows.append(
                {
                    "image_id": image_id,
                    "source": "demo",
                    "kind": "natural",
                    "width": width,
                    "height": height,
                    "region_id": f"{image_id}#{r}",
                    "x1": 1.5 + r,
                    "y1": 2.0,
                    "x2": width - 1.0,
                    "y2": height - 0.25,
                    "text": f"thing {i}/{r} é",
                    "text_type": "caption",
                    "global_caption": None if i % 4 == 0 else f"scene {i}",
                    "split": split,
                    "image_path": str(path),
                    "iscrowd": r == 1,
                    "text_is_target": r != 2,
                }
            )
    return [region_batch(rows[i : i + rows_per_batch]) for i in range(0, len(rows), rows_per_batch)]


def sha256_tree(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def read_tar(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_plan_cuts_shards_by_image_count(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 10)
    specs = list(plan_shards(batches, ShardConfig(max_images_per_shard=3)))
    assert [s.name for s in specs] == [f"train-{i:06d}.tar" for i in range(4)]
    assert [len(s.images) for s in specs] == [3, 3, 3, 1]
    assert [e.image_id for s in specs for e in s.images] == [f"demo/{i}" for i in range(10)]
    assert sum(s.regions for s in specs) == sum(b.num_rows for b in batches)


def test_plan_cuts_shards_by_bytes_and_sizes_are_exact(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 12)
    cfg = ShardConfig(max_shard_bytes=10240, workers=1)
    specs = list(plan_shards(batches, cfg))
    assert len(specs) > 1
    manifest = write_shards(specs, tmp_path / "out", cfg)
    sizes = [entry["bytes"] for entry in manifest["shards"]]
    assert sizes == [s.planned_bytes for s in specs]
    assert sizes == [(tmp_path / "out" / s.name).stat().st_size for s in specs]
    assert all(size <= cfg.max_shard_bytes for size in sizes)

    def member_bytes(entry: ImageEntry) -> int:
        return tar_member_bytes(entry.image_size) + tar_member_bytes(len(entry.json_bytes))

    for spec, following in itertools.pairwise(specs):  # closed only when the next image overflows
        grown = sum(map(member_bytes, (*spec.images, following.images[0])))
        assert tar_archive_bytes(grown) > cfg.max_shard_bytes


def test_images_are_routed_to_their_split(tmp_path: Path) -> None:
    splits = ["train", "val", "train", "test", "val", "train", "train"]
    specs = list(plan_shards(make_images(tmp_path / "img", splits), ShardConfig()))
    assert [s.name for s in specs] == ["train-000000.tar", "val-000000.tar", "test-000000.tar"]
    for spec in specs:
        expected = [f"demo/{i}" for i, split in enumerate(splits) if split == spec.split]
        assert [e.image_id for e in spec.images] == expected


def test_shard_layout_members_and_json(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 3)
    cfg = ShardConfig(workers=1)
    write_shards(plan_shards(batches, cfg), tmp_path / "out", cfg)
    members = read_tar(tmp_path / "out" / "train-000000.tar")
    keys = [sample_key(f"demo/{i}") for i in range(3)]
    assert [m.name for m, _ in members] == [
        f"{k}.{ext}"
        for k, ext0 in zip(keys, ["png", "jpg", "png"], strict=True)
        for ext in (ext0, "json")
    ]
    for member, _ in members:
        assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
        assert (member.uname, member.gname, member.isreg()) == ("", "", True)
    rows = pa.Table.from_batches(batches).to_pylist()
    for i in range(3):
        (_, image), (_, meta_bytes) = members[2 * i], members[2 * i + 1]
        mine = [r for r in rows if r["image_id"] == f"demo/{i}"]
        assert image == Path(mine[0]["image_path"]).read_bytes()  # not re-encoded
        meta = json.loads(meta_bytes.decode("utf-8"))
        assert (
            meta_bytes
            == json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )
        image_fields = ["image_id", "source", "kind", "width", "height", "global_caption", "split"]
        assert {k: meta[k] for k in image_fields} == {k: mine[0][k] for k in image_fields}
        region_fields = [
            "region_id",
            "x1",
            "y1",
            "x2",
            "y2",
            "text",
            "text_type",
            "iscrowd",
            "text_is_target",
        ]
        assert meta["regions"] == [{k: r[k] for k in region_fields} for r in mine]
        assert set(meta) == {*image_fields, "regions"}


def test_same_input_gives_identical_bytes_serial_and_parallel(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train", "val"] * 9)
    trees = []
    for run, workers in enumerate([1, 1, 2]):
        cfg = ShardConfig(max_images_per_shard=2, workers=workers)
        write_shards(plan_shards(batches, cfg), tmp_path / f"out{run}", cfg)
        trees.append(sha256_tree(tmp_path / f"out{run}"))
    assert len(trees[0]) == 5 + 5 + 1  # 9 train, 9 val images, 2 per shard; manifest
    assert trees[0] == trees[1] == trees[2]


def test_manifest_counts_hashes_and_content_hash(tmp_path: Path) -> None:
    splits = ["train"] * 5 + ["val"] * 2
    batches = make_images(tmp_path / "img", splits)
    cfg = ShardConfig(max_images_per_shard=2, workers=1)
    manifest = write_shards(plan_shards(batches, cfg), tmp_path / "out", cfg)
    assert read_manifest(tmp_path / "out") == manifest
    assert manifest["version"] == 1
    names = [s["name"] for s in manifest["shards"]]
    assert names == ["train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    for shard in manifest["shards"]:
        path = tmp_path / "out" / shard["name"]
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert shard["bytes"] == path.stat().st_size
        assert shard["images"] == len(read_tar(path)) // 2
    regions_per_image = [1 + i % 3 for i in range(len(splits))]
    assert manifest["splits"]["train"] == {
        "shards": 3,
        "images": 5,
        "regions": sum(regions_per_image[:5]),
        "bytes": sum(s["bytes"] for s in manifest["shards"][:3]),
    }
    assert manifest["splits"]["test"] == {"shards": 0, "images": 0, "regions": 0, "bytes": 0}
    lines = "".join(f"{s['name']} {s['sha256']}\n" for s in manifest["shards"])
    assert manifest["content_hash"] == hashlib.sha256(lines.encode()).hexdigest()
    # a one-pixel change to one image changes the version tag
    Image.new("RGB", (24, 16), (1, 2, 3)).save(tmp_path / "img" / "img0000.png")
    again = write_shards(plan_shards(batches, cfg), tmp_path / "out", cfg)
    assert again["content_hash"] != manifest["content_hash"]


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_output_and_no_temp_dir(tmp_path: Path, existing: bool) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 8)
    cfg = ShardConfig(max_images_per_shard=1, workers=2)
    out = tmp_path / "data" / "shards"
    before = write_shards(plan_shards(batches, cfg), out, cfg) if existing else None
    tree = sha256_tree(out) if existing else None
    specs = list(plan_shards(batches, cfg))
    vanished = tmp_path / "img" / "img0005.jpg"
    vanished.unlink()
    with pytest.raises(DataError, match=r"img0005\.jpg.*train-000005\.tar.*image_missing"):
        write_shards(specs, out, cfg)
    assert [p.name for p in out.parent.iterdir()] == (["shards"] if existing else [])
    if existing:
        assert sha256_tree(out) == tree
        assert read_manifest(out) == before


def test_plan_refuses_bad_input_with_file_record_and_rule(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 3)
    rows = pa.Table.from_batches(batches).to_pylist()
    (tmp_path / "img" / "img0001.jpg").unlink()
    with pytest.raises(DataError, match=r"img0001\.jpg: image_id='demo/1': \[image_missing\]"):
        list(plan_shards(batches, ShardConfig()))
    split_rows = [rows[0], rows[3], rows[0] | {"region_id": "demo/0#9"}]  # demo/0 interrupted
    with pytest.raises(DataError, match=r"\[image_not_contiguous\]"):
        list(plan_shards([region_batch(split_rows)], ShardConfig()))
    with pytest.raises(DataError, match=r"\[image_fields_differ\].*'split'"):
        list(plan_shards([region_batch([rows[0], rows[0] | {"split": "val"}])], ShardConfig()))
    with pytest.raises(DataError, match=r"\[image_format\]"):
        list(plan_shards([region_batch([rows[0] | {"image_path": "x.gif"}])], ShardConfig()))


def test_image_whose_content_is_not_its_extension_is_refused(tmp_path: Path) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 2)
    png_bytes = io.BytesIO()
    Image.new("RGB", (25, 17)).save(png_bytes, "PNG")
    (tmp_path / "img" / "img0001.jpg").write_bytes(png_bytes.getvalue())
    cfg = ShardConfig(workers=1)
    with pytest.raises(DataError, match=r"img0001\.jpg.*\[image_format\]"):
        write_shards(plan_shards(batches, cfg), tmp_path / "out", cfg)
    assert not (tmp_path / "out").exists()


def test_image_larger_than_the_limit_gets_its_own_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches = make_images(tmp_path / "img", ["train"] * 3)
    with caplog.at_level("WARNING"):
        specs = list(plan_shards(batches, ShardConfig(max_shard_bytes=1)))
    assert [len(s.images) for s in specs] == [1, 1, 1]
    assert caplog.text.count("alone exceeds max_shard_bytes=1") == 3


def test_config_rejects_typos_and_nonsense() -> None:
    with pytest.raises(pydantic.ValidationError):
        ShardConfig(max_shard_byte=10)
    with pytest.raises(pydantic.ValidationError):
        ShardConfig(workers=0)
