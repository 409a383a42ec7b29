"""Image checks with real files: missing, truncated, wrong size, decompression bombs."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from granvit_pipeline.regions.image_checks import ImageChecker, ImageRef, check_image
from granvit_pipeline.regions.schema import region_batch
from granvit_pipeline.regions.validation import ValidationConfig, find_rejections

LIMIT = 89_478_485


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def write_bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit PNG, streamed: tiny on disk and cheap to write at any size."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    sig = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(sig + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def write_image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A noisy RGB image (noise so that compressed data is long enough to cut)."""
    Image.effect_noise(size, 60).convert("RGB").save(path)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def ref(path: Path, size: tuple[int, int] = (64, 48)) -> ImageRef:
    return ImageRef(image_id=path.stem, path=str(path), width=size[0], height=size[1])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_good_image_passes(tmp_path: Path, suffix: str) -> None:
    path = write_image(tmp_path / f"ok{suffix}")
    assert check_image(ref(path), LIMIT).rule is None


def test_missing_file(tmp_path: Path) -> None:
    result = check_image(ref(tmp_path / "nope.png"), LIMIT)
    assert result.rule == "image_missing" and "nope.png" in result.message


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_is_undecodable(tmp_path: Path, suffix: str) -> None:
    path = truncate(write_image(tmp_path / f"cut{suffix}"))
    with Image.open(path) as im:  # the header alone still reads fine
        assert im.size == (64, 48)
    result = check_image(ref(path), LIMIT)
    assert result.rule == "image_undecodable", result.message
    assert "cut" in result.message


def test_not_an_image_is_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    result = check_image(ref(path), LIMIT)
    assert result.rule == "image_undecodable" and "header" in result.message


def test_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    path = write_image(tmp_path / "small.png", (64, 48))
    result = check_image(ref(path, (64, 50)), LIMIT)
    assert result.rule == "image_size_mismatch"
    assert "64x48" in result.message and "64x50" in result.message


def test_configured_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    path = write_bilevel_png(tmp_path / "big.png", 5000, 5000)
    result = check_image(ref(path, (5000, 5000)), max_pixels=1_000_000)
    assert result.rule == "image_too_large"
    assert "25000000" in result.message and "1000000" in result.message
    assert check_image(ref(path, (5000, 5000)), max_pixels=25_000_000).rule is None


def test_decompression_bomb_over_pillows_own_guard(tmp_path: Path) -> None:
    path = write_bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200_000  # small on disk, 400M pixels declared
    result = check_image(ref(path, (20000, 20000)), LIMIT)
    assert result.rule == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == LIMIT  # the global was not touched


def test_checker_caches_by_image_id(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png")
    with ImageChecker(LIMIT, workers=2) as checker:
        results = list(checker.check([ref(path), ref(path)]))
        results += list(checker.check([ref(path)]))
    assert [r.rule for r in results] == [None, None, None]
    assert checker.checked == 1


def _row(img: str, rid: str, path: str, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    return {
        "image_id": img, "source": "demo", "kind": "natural", "width": size[0],
        "height": size[1], "region_id": f"{img}#{rid}", "x1": 0.0, "y1": 0.0, "x2": 10.0,
        "y2": 10.0, "text": "a dog", "text_type": "caption", "global_caption": None,
        "split": "train", "image_path": path, "iscrowd": False, "text_is_target": True,
    }  # fmt: skip


def test_find_rejections_quarantines_every_row_of_a_bad_image(tmp_path: Path) -> None:
    write_image(tmp_path / "good.png")
    truncate(write_image(tmp_path / "cut.jpg"))
    write_image(tmp_path / "odd.png", (60, 48))
    write_bilevel_png(tmp_path / "bomb.png", 3000, 3000)
    rows = [_row("d/good", "0", "good.png"), _row("d/good", "1", "good.png"),
            _row("d/cut", "0", "cut.jpg"), _row("d/cut", "1", "cut.jpg"),
            _row("d/odd", "0", "odd.png"), _row("d/gone", "0", "gone.png"),
            _row("d/bomb", "0", "bomb.png", (3000, 3000))]  # fmt: skip
    cfg = ValidationConfig(filters_enabled=False, run_expectations=False,
                           image_root=str(tmp_path), max_image_pixels=1_000_000)  # fmt: skip
    # Rows of d/cut straddle two batches: the image is still opened once.
    result = find_rejections([region_batch(rows[:3]), region_batch(rows[3:])], cfg)
    got = {r["record"]: r for r in result.quarantine.to_pylist()}
    assert {k: v["rule"] for k, v in got.items()} == {
        "d/cut#0": "image_undecodable", "d/cut#1": "image_undecodable",
        "d/odd#0": "image_size_mismatch", "d/gone#0": "image_missing",
        "d/bomb#0": "image_too_large",
    }  # fmt: skip
    assert "cut.jpg" in got["d/cut#1"]["message"]
    s = result.summary
    assert (s.images_checked, s.images_failed_checks, s.images_seen) == (5, 4, 5)


def test_images_without_accepted_rows_are_not_opened(tmp_path: Path) -> None:
    rows = [_row("d/gone", "0", "gone.png") | {"kind": "bad"}]
    cfg = ValidationConfig(filters_enabled=False, run_expectations=False, image_root=str(tmp_path))
    result = find_rejections([region_batch(rows)], cfg)
    assert result.quarantine.column("rule").to_pylist() == ["kind_valid"]
    assert result.summary.images_checked == 0


def test_real_coco_images_pass(coco128: Path) -> None:
    meta = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    refs = [
        ImageRef(str(im["id"]), im["file_name"], im["width"], im["height"])
        for im in meta["images"][:4]
    ]
    with ImageChecker(LIMIT, workers=2, root=coco128 / "train2017") as checker:
        results = list(checker.check(refs))
    assert [r.rule for r in results] == [None] * len(refs), [r.message for r in results]
