"""The demo data generator: determinism, the record format, and honest, checkable ground truth.

Boxes, shapes, colours, sizes and OCR words are checked against the decoded PNG pixels, and every
referring expression is resolved by an independent parser written here.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from granvit_pipeline.regions.demo import (
    DemoConfig,
    DemoScene,
    ShapeObject,
    demo_scene,
    demo_statistics,
    generate_demo,
)
from granvit_pipeline.regions.schema import REGION_SCHEMA, assign_split, region_batch

CFG = DemoConfig(n_images=120, ocr_fraction=0.3)
# Few attribute values and many twins: most objects need two attributes or a relation.
HARD = DemoConfig(
    n_images=80,
    ocr_fraction=0.0,
    shapes=("circle", "square"),
    colours={"red": (220, 40, 40), "blue": (40, 80, 225)},
    duplicate_prob=0.5,
    min_objects=3,
)
RELATIONS = ("left of", "right of", "above", "below")


@pytest.fixture(scope="module")
def scenes() -> list[DemoScene]:
    return [demo_scene(CFG, i) for i in range(CFG.n_images)]


@pytest.fixture(scope="module")
def hard_scenes() -> list[DemoScene]:
    return [demo_scene(HARD, i) for i in range(HARD.n_images)]


def _pixels(scene: DemoScene) -> np.ndarray:
    img = Image.open(io.BytesIO(scene.image.png))
    assert img.mode == "RGB" and img.size == (scene.image.record["width"],) * 2
    return np.asarray(img)


def _serialised(cfg: DemoConfig) -> list[tuple[str, bytes, str]]:
    return [(d.name, d.png, json.dumps(d.record, sort_keys=True)) for d in generate_demo(cfg)]


def test_same_config_gives_byte_identical_data() -> None:
    cfg = DemoConfig(n_images=40, ocr_fraction=0.3)
    first = _serialised(cfg)
    assert first == _serialised(DemoConfig(**cfg.model_dump()))
    assert len({png for _, png, _ in first}) == len(first)  # and the images are not all alike


def _digest(cfg: DemoConfig) -> str:
    return hashlib.sha256(repr(_serialised(cfg)).encode()).hexdigest()


def test_identical_across_processes() -> None:
    """A fresh interpreter (other hash seed, cold caches) renders the very same bytes."""
    code = (
        "import hashlib, json\n"
        "from granvit_pipeline.regions.demo import DemoConfig, generate_demo\n"
        "cfg = DemoConfig(n_images=30, ocr_fraction=0.5)\n"
        "items = [(d.name, d.png, json.dumps(d.record, sort_keys=True))\n"
        "         for d in generate_demo(cfg)]\n"
        "print(hashlib.sha256(repr(items).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(DemoConfig(n_images=30, ocr_fraction=0.5))


def test_other_seed_gives_other_data() -> None:
    a, b = _serialised(DemoConfig(n_images=40)), _serialised(DemoConfig(n_images=40, seed=1))
    assert sum(x[1] != y[1] for x, y in zip(a, b, strict=True)) == 40
    assert sum(x[2] != y[2] for x, y in zip(a, b, strict=True)) >= 35


def test_streams_without_materialising() -> None:
    stream = generate_demo(DemoConfig(n_images=10**7))
    first = next(stream)
    assert first.name == "images/0000000.png" == first.record["image"]
    assert first.record == demo_scene(DemoConfig(n_images=10**7), 0).image.record


def _contract_rows(rec: dict, source: str) -> list[dict]:
    """Map one record into region rows as FORMAT_JSONL.md says (ids prefixed by the source)."""
    image_id = f"{source}/{rec['image_id']}"
    image = {k: rec[k] for k in ("kind", "width", "height", "global_caption")}
    rows = []
    for region in rec["regions"]:
        x1, y1, x2, y2 = region["box"]
        assert 0 <= x1 < x2 <= rec["width"] and 0 <= y1 < y2 <= rec["height"]
        rows.append(
            {
                **image,
                **dict(x1=x1, y1=y1, x2=x2, y2=y2, source=source, image_id=image_id),
                "region_id": f"{image_id}#{region['id']}",
                "text": region["text"],
                "text_type": region["text_type"],
                "text_is_target": region.get("text_is_target", True),
                "split": assign_split(image_id),
                "image_path": rec["image"],
                "iscrowd": False,
            }
        )
    return rows


def test_records_map_through_the_jsonl_format(scenes: list[DemoScene]) -> None:
    rows = []
    for scene in scenes:
        rec = json.loads(json.dumps(scene.image.record, allow_nan=False))
        keys = {"image_id", "image", "width", "height", "kind", "global_caption", "regions"}
        assert set(rec) == keys and rec["kind"] in ("natural", "ocr")
        assert rec["image"] == scene.image.name
        _pixels(scene)
        for region in rec["regions"]:
            assert set(region) == {"id", "box", "text", "text_type", "text_is_target"}
        rows += _contract_rows(rec, CFG.source)
    batch = region_batch(rows)
    assert batch.schema == REGION_SCHEMA and batch.num_rows == len(rows) > len(scenes)
    assert len(set(batch.column("region_id").to_pylist())) == len(rows)


def test_statistics_of_the_default_data() -> None:
    cfg = DemoConfig(n_images=200)
    records = [d.record for d in generate_demo(cfg)]
    stats = demo_statistics(records)
    natural = [r for r in records if r["kind"] == "natural"]
    assert stats["images"] == 200 == sum(stats["images_per_kind"].values())
    assert stats["regions"] == sum(len(r["regions"]) for r in records)
    assert stats["mean_objects_per_natural_image"] >= 2.0
    assert all(cfg.min_objects <= len(r["regions"]) <= cfg.max_objects for r in natural)
    assert 0.08 < stats["images_per_kind"]["ocr"] / 200 < 0.25  # ocr_fraction 0.15
    assert stats["max_words_per_text"] <= 10
    assert stats["most_common_text_frequency"] < 0.25  # no single answer dominates
    assert stats["relation_fraction"] > 0.02  # some objects need a spatial relation


def test_statistics_counts_hand_made_records() -> None:
    box = [0.0, 0.0, 5.0, 10.0]
    records = [
        {"kind": "natural", "width": 10, "height": 10, "global_caption": "x", "regions": [
            {"box": box, "text": "the circle", "text_type": "refexp"},
            {"box": box, "text": "the red shape left of the circle", "text_type": "refexp"}]},
        {"kind": "ocr", "width": 10, "height": 10, "global_caption": None, "regions": [
            {"box": box, "text": "the circle", "text_type": "ocr"}]},
    ]  # fmt: skip
    stats = demo_statistics(records)
    assert stats["images_per_kind"] == {"natural": 1, "ocr": 1}
    assert stats["regions_per_text_type"] == {"ocr": 1, "refexp": 2}
    assert stats["distinct_texts"] == 2 and stats["distinct_global_captions"] == 1
    assert stats["most_common_text"] == "the circle"
    assert stats["most_common_text_frequency"] == pytest.approx(2 / 3)
    assert stats["most_common_text_frequency_per_type"] == {"ocr": 1.0, "refexp": 0.5}
    assert stats["relation_fraction"] == pytest.approx(1 / 3)
    assert stats["random_box_chance"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert stats["mean_box_area_fraction"] == pytest.approx(0.5)
    assert stats["max_words_per_text"] == 7


def _parse(phrase: str, cfg: DemoConfig) -> dict[str, str]:
    words = phrase.split()
    assert words[0] == "the" and len(words) in (2, 3, 4), phrase
    wanted = {} if words[-1] == "shape" else {"shape": words[-1]}
    assert words[-1] == "shape" or words[-1] in cfg.shapes, phrase
    for word in words[1:-1]:
        key = "size" if word in cfg.sizes else "colour" if word in cfg.colours else None
        assert key is not None and key not in wanted, phrase
        wanted[key] = word
    return wanted


def _matching(objects: Sequence[ShapeObject], wanted: dict[str, str]) -> list[int]:
    return [i for i, o in enumerate(objects) if all(getattr(o, k) == v for k, v in wanted.items())]


def _holds(relation: str, obj: ShapeObject, anchor: ShapeObject) -> bool:
    (x, y), (ax, ay) = obj.centre, anchor.centre
    return {"left of": x < ax, "right of": x > ax, "above": y < ay, "below": y > ay}[relation]


def resolve(text: str, objects: Sequence[ShapeObject], cfg: DemoConfig) -> list[int]:
    """Indices of the objects that ``text`` describes (an independent reading of the grammar)."""
    for relation in RELATIONS:
        if f" {relation} " in text:
            target, anchor_phrase = text.split(f" {relation} ")
            anchors = _matching(objects, _parse(anchor_phrase, cfg))
            if len(anchors) != 1:
                return []
            anchor = objects[anchors[0]]
            candidates = _matching(objects, _parse(target, cfg))
            return [i for i in candidates if _holds(relation, objects[i], anchor)]
    return _matching(objects, _parse(text, cfg))


@pytest.mark.parametrize("which", ["scenes", "hard_scenes"])
def test_every_refexp_picks_out_exactly_its_object(which: str, request: pytest.FixtureRequest):
    cfg = CFG if which == "scenes" else HARD
    relations = 0
    for scene in request.getfixturevalue(which):
        texts = [r["text"] for r in scene.image.record["regions"]]
        assert len(set(texts)) == len(texts)  # unique within the image (OCR lines too)
        if scene.image.record["kind"] == "ocr":
            continue
        assert len(texts) == len(scene.objects)
        for i, text in enumerate(texts):
            assert len(text.split()) <= 10
            assert resolve(text, scene.objects, cfg) == [i], (text, scene.objects)
            relations += any(f" {r} " in text for r in RELATIONS)
            for phrase in re.split(" left of | right of | above | below ", text):
                target = _matching(scene.objects, _parse(phrase, cfg))[0]  # target or anchor
                _assert_fewest_attributes(target, phrase, scene.objects, cfg)
    assert relations > (10 if which == "hard_scenes" else 0)


def _assert_fewest_attributes(
    i: int, phrase: str, objects: Sequence[ShapeObject], cfg: DemoConfig
) -> None:
    """No phrase with fewer attributes separates object ``i`` (and its twins) from the rest."""
    obj = objects[i]
    twins = set(_matching(objects, {k: getattr(obj, k) for k in ("shape", "colour", "size")}))
    for keys in itertools.chain.from_iterable(
        itertools.combinations(("shape", "colour", "size"), n)
        for n in range(1, len(_parse(phrase, cfg)))
    ):
        matches = set(_matching(objects, {k: getattr(obj, k) for k in keys}))
        assert not matches <= twins, f"{phrase!r} is not minimal: {keys} would do"


def _classify_shape(mask: np.ndarray) -> str:
    rows, width = mask.sum(axis=1), mask.shape[1]
    corners_empty = not (mask[0, 0] or mask[0, -1] or mask[-1, 0] or mask[-1, -1])
    if mask.all():
        return "square"
    if rows[-1] == width and rows[0] < width / 2:
        return "triangle"
    if corners_empty and len(set(rows.tolist())) == 2:
        return "cross"
    return "circle" if mask.mean() > 0.65 else "diamond"


def _assert_tight(ink: np.ndarray, box: Sequence[float]) -> None:
    ys, xs = np.nonzero(ink)
    drawn = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert all(abs(a - b) <= 1 for a, b in zip(drawn, box, strict=True)), (drawn, box)


def test_shapes_match_pixels_and_boxes_are_tight(scenes: list[DemoScene]) -> None:
    palette = np.array(list(CFG.colours.values()))
    for scene in (s for s in scenes if s.objects):
        pixels = _pixels(scene)
        painted = (pixels[:, :, None, :] == palette).all(axis=-1)  # (H, W, colours)
        inside = np.zeros(pixels.shape[:2], dtype=bool)
        for obj in scene.objects:
            x1, y1, x2, y2 = (int(v) for v in obj.box)
            assert obj.box == (x1, y1, x2, y2)
            inside[y1:y2, x1:x2] = True
            crop = painted[y1:y2, x1:x2]
            colour = list(CFG.colours).index(obj.colour)
            assert crop.any(axis=(0, 1)).nonzero()[0].tolist() == [colour]  # no other object
            _assert_tight(painted[:, :, colour] & inside, obj.box)
            assert _classify_shape(crop[:, :, colour]) == obj.shape
            lo, hi = CFG.sizes[obj.size]
            assert lo * CFG.image_size - 1 <= max(x2 - x1, y2 - y1) <= hi * CFG.image_size + 1
            inside[:] = False
        covered = np.zeros_like(inside)
        for x1, y1, x2, y2 in (np.array(o.box, dtype=int) for o in scene.objects):
            covered[y1:y2, x1:x2] = True
        assert not (painted.any(axis=-1) & ~covered).any()  # no drawn pixel outside all boxes


def test_global_caption_lists_every_object(scenes: list[DemoScene]) -> None:
    for scene in (s for s in scenes if s.objects):
        caption = scene.image.record["global_caption"]
        for obj in scene.objects:
            assert f"a {obj.size} {obj.colour} {obj.shape}" in caption
        assert caption.count(" a ") + caption.startswith("a ") == len(scene.objects)


def _word_blobs(ink: np.ndarray, min_gap: int) -> list[np.ndarray]:
    """Split a line's ink into words at column gaps of at least ``min_gap`` pixels."""
    cols = np.flatnonzero(ink.any(axis=0))
    cuts = np.flatnonzero(np.diff(cols) > min_gap)
    starts, ends = [cols[0], *cols[cuts + 1]], [*cols[cuts], cols[-1]]
    blobs = [ink[:, a : b + 1] for a, b in zip(starts, ends, strict=True)]
    rows = [np.flatnonzero(b.any(axis=1)) for b in blobs]
    return [b[r[0] : r[-1] + 1] for b, r in zip(blobs, rows, strict=True)]


def _rendered(word: str, size: int) -> np.ndarray:
    img = Image.new("1", (size * (len(word) + 4), 3 * size), 0)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"
    draw.text((size, size), word, font=ImageFont.load_default(size=size), fill=1)
    ink = np.array(img, dtype=bool)
    ys, xs = np.nonzero(ink)
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def test_ocr_text_is_what_is_drawn(scenes: list[DemoScene]) -> None:
    ocr = [s for s in scenes if s.image.record["kind"] == "ocr"]
    assert len(ocr) >= 20
    background = np.array(CFG.background, dtype=int)
    for scene in ocr:
        rec = scene.image.record
        assert rec["global_caption"] is None and not scene.objects
        assert [r["text_type"] for r in rec["regions"]] == ["ocr"] * len(scene.lines)
        ink = np.abs(_pixels(scene).astype(int) - background).max(axis=-1) > CFG.background_noise
        covered = np.zeros_like(ink)
        for line, region in zip(scene.lines, rec["regions"], strict=True):
            assert region["text"] == line.text and list(line.box) == region["box"]
            assert all(w in CFG.ocr_vocabulary for w in line.text.split())
            x1, y1, x2, y2 = (int(v) for v in line.box)
            covered[y1:y2, x1:x2] = True
            in_box = np.zeros_like(ink)
            in_box[y1:y2, x1:x2] = True
            _assert_tight(ink & in_box, line.box)
            blobs = _word_blobs(ink[y1:y2, x1:x2], min_gap=3)
            words = line.text.split()
            assert len(blobs) == len(words), line.text
            for blob, word in zip(blobs, words, strict=True):
                assert np.array_equal(blob, _rendered(word, line.font_size)), word
        assert not (ink & ~covered).any()


@pytest.mark.parametrize(
    "override",
    [
        {"colour": "red"},  # typo'd / unknown key
        {"min_objects": 5, "max_objects": 3},
        {"sizes": {"small": (0.1, 0.3), "big": (0.25, 0.4)}},  # overlapping size classes
        {"colours": {"red": (220, 40, 40), "pink": (225, 50, 50)}},  # not distinct
        {"colours": {"grey": (230, 230, 225)}},  # invisible on the background
        {"max_objects": 12},  # cannot fit
        {"shapes": ("circle", "hexagon")},
        {"sizes": {"shape": (0.1, 0.2)}},  # reserved word in expressions
    ],
)
def test_bad_configs_are_rejected(override: dict) -> None:
    with pytest.raises(ValidationError):
        DemoConfig(**override)


def test_impossible_scene_raises_clearly() -> None:
    cfg = DemoConfig(shapes=("circle",), colours={"red": (220, 40, 40)}, sizes={"big": (0.3, 0.34)},
                     min_objects=2, max_objects=2, ocr_fraction=0.0, max_attempts=5)  # fmt: skip
    with pytest.raises(RuntimeError, match="config too crowded"):
        demo_scene(cfg, 0)  # two identical objects and no anchor: never describable
