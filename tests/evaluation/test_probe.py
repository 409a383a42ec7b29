"""Encoder probe: demo labels against the generator's ground truth, the linear probe on
hand-made features, and the whole probe on the tiny preset over generated demo samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from granvit_pipeline.evaluation import linear_probe, probe_encoder, region_features, region_labels
from granvit_pipeline.evaluation.probe import demo_caption_objects
from granvit_pipeline.model import GranViT, get_preset, preprocess_image
from granvit_pipeline.model.roi import roi_features
from granvit_pipeline.regions.demo import DemoConfig, demo_scene
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.granvit.smoke import write_demo_shards

N_IMAGES = 60  # ~15% OCR images, ~3 objects per natural image: ~150 labelled regions


@pytest.fixture(scope="module")
def demo_samples(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Demo images through the real record mapping and shard writer (as training reads them)."""
    shards = write_demo_shards(tmp_path_factory.mktemp("probe") / "shards", n_images=N_IMAGES)
    return list(ShardDataset(Path(shards), "train"))


def test_demo_labels_are_the_generators_ground_truth(demo_samples: list[dict]) -> None:
    cfg, checked = DemoConfig(n_images=N_IMAGES), 0
    for sample in demo_samples:
        scene = demo_scene(cfg, int(sample["image_id"].split("/")[1]))
        for name in ("shape", "colour", "size"):
            labels = region_labels(sample, name)
            assert len(labels) == len(scene.objects)  # every natural region, none for OCR
            for region_id, value in labels.items():
                obj = scene.objects[int(region_id.split("#")[1])]  # record order = object order
                assert getattr(obj, name) == value
                checked += 1
    assert checked > 300


def test_caption_parsing_and_images_without_labels() -> None:
    assert demo_caption_objects("a big red circle") == [
        {"size": "big", "colour": "red", "shape": "circle"}
    ]
    two = demo_caption_objects("a small blue square, a big red circle and a big red cross")
    assert [o["shape"] for o in two or []] == ["square", "circle", "cross"]
    assert demo_caption_objects("two dogs on a sofa") is None
    assert demo_caption_objects(None) is None
    region = {"region_id": "r0", "x1": 0, "y1": 0, "x2": 4, "y2": 4, "text": "the circle",
              "text_type": "refexp"}  # fmt: skip
    sample = {"global_caption": "a big red circle and a small blue square", "regions": [region]}
    assert region_labels(sample, "shape") == {}  # 2 objects, 1 region: no guessing
    coco = {"regions": [{**region, "text": " Dog ", "text_type": "category"}]}
    assert region_labels(coco, "category") == {"r0": "dog"}
    assert region_labels(coco, "shape") == {}
    with pytest.raises(ValueError, match="label"):
        region_labels(coco, "texture")


def test_linear_probe_on_separable_features_and_chance() -> None:
    rng = np.random.default_rng(0)
    centres = {"a": [4.0, 0.0], "b": [0.0, 4.0], "c": [-4.0, -4.0]}
    train_y = ["a"] * 10 + ["b"] * 6 + ["c"] * 4
    val_y = ["b", "b", "a", "c"]

    def x(ys: list[str]) -> np.ndarray:
        return np.array([centres[y] for y in ys]) + rng.normal(0, 0.3, (len(ys), 2))

    m = linear_probe(x(train_y), train_y, x(val_y), val_y)
    assert m == {"accuracy": 1.0, "chance": 0.25, "n_train": 20, "n_val": 4, "classes": 3}
    one = linear_probe(x(["a"] * 3), ["a"] * 3, x(val_y), val_y)  # one class: constant answer
    assert one["accuracy"] == one["chance"] == 0.25
    assert linear_probe(np.zeros((0, 2)), [], x(val_y), val_y)["accuracy"] == 0.0
    with pytest.raises(ValueError, match="length"):
        linear_probe(x(train_y), train_y[:-1], x(val_y), val_y)


@pytest.fixture
def tiny_encoder() -> GranViT:
    torch.manual_seed(0)
    return GranViT(get_preset("tiny"))


def test_region_feature_is_the_mean_of_its_roialign_bins(
    tiny_encoder: GranViT, demo_samples: list[dict]
) -> None:
    sample = next(s for s in demo_samples if region_labels(s, "shape"))
    feats = region_features(tiny_encoder, [sample], ["shape"], roi_output_size=2)
    region = next(r for r in sample["regions"] if r["region_id"] == feats.region_ids[0])
    pixels, transform = preprocess_image(sample["image"], tiny_encoder.image_size)
    box = transform.boxes_to_encoder([[region["x1"], region["y1"], region["x2"], region["y2"]]])
    with torch.no_grad():
        patch = tiny_encoder.eval().encode_image(pixels[None])
        bins = roi_features(patch, torch.tensor(box).float(), torch.zeros(1, dtype=torch.long),
                            tiny_encoder.patch_grid, tiny_encoder.image_size, 2)  # fmt: skip
    assert feats.features.shape == (len(feats.region_ids), 32)
    np.testing.assert_allclose(feats.features[0], bins.mean(dim=(2, 3))[0].numpy(), atol=1e-5)
    assert feats.labels["shape"] == list(region_labels(sample, "shape").values())


def test_probe_on_the_tiny_preset(tiny_encoder: GranViT, demo_samples: list[dict]) -> None:
    train, val = demo_samples[:40], demo_samples[40:]
    tiny_encoder.train()
    m = probe_encoder(tiny_encoder, train, val, labels=("shape", "colour"), batch_size=16)
    assert tiny_encoder.training  # mode restored
    n_val = sum(len(region_labels(s, "shape")) for s in val)
    assert m["probe/shape/n_val"] == m["probe/colour/n_val"] == n_val > 20
    assert m["probe/colour/classes"] == 6 and m["probe/regions_per_s"] > 0
    for name in ("shape", "colour"):
        assert 0.0 <= m[f"probe/{name}/accuracy"] <= 1.0
        assert 0.0 < m[f"probe/{name}/chance"] < 1.0
    # colour is linearly readable even from a random encoder (pixel means survive it)
    assert m["probe/colour/accuracy"] > m["probe/colour/chance"] + 0.2
    again = probe_encoder(tiny_encoder, train, val, labels=("shape", "colour"), batch_size=7)
    assert again["probe/shape/accuracy"] == pytest.approx(m["probe/shape/accuracy"])
    capped = region_features(tiny_encoder, train, ["size"], max_images=5)
    assert len(capped.region_ids) == sum(len(region_labels(s, "size")) for s in train[:5])
