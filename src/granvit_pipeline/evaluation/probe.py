"""Encoder-only linear probe: how well a region's label is linearly readable from the encoder.

This measures the vision encoder alone (no projector, no LLM):

1. **Features.** Each image goes through the encoder's preprocessing
   (:func:`~granvit_pipeline.model.data.preprocess_image`: aspect-preserving resize + centred
   pad to ``S x S``); its patch features ``(N, C)`` (``layer``: None = last hidden state) are
   RoIAlign-pooled over the region's box (:func:`~granvit_pipeline.model.roi.roi_features`,
   ``roi_output_size`` bins per side) and the bins are averaged: one ``(C,)`` vector per region.
2. **Classifier.** A multinomial logistic regression (scikit-learn, L2, on standardised
   features) is fitted on the train-split regions and scored on the val-split regions.
   ``chance`` is the val accuracy of always answering the train split's most common label.

Labels (:func:`region_labels`), by name:

* ``category``: the region's text, for ``text_type == "category"`` regions (e.g. COCO boxes).
* ``shape`` / ``colour`` / ``size``: the demo data's object attributes. Demo referring
  expressions name only the fewest attributes needed (``"the red shape"``), but a demo image's
  global caption lists every object in full, ``"a <size> <colour> <shape>, ... and a ..."``,
  ordered by box centre (x, then y; :func:`~granvit_pipeline.regions.demo.language.
  global_caption`). So the image's ``refexp`` regions sorted the same way line up one to one
  with the caption's objects. An image whose caption is not of that form, or whose number of
  refexp regions differs from the caption's objects (e.g. validation dropped one), gives no
  labels.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from granvit_pipeline.evaluation.config import EvaluateParams
from granvit_pipeline.evaluation.loading import split_samples
from granvit_pipeline.model.data import preprocess_image
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.roi import roi_features
from granvit_pipeline.model.tokenizer import normalize_text

logger = logging.getLogger(__name__)

PROBE_LABELS: tuple[str, ...] = ("shape", "colour", "size", "category")
_DEMO_ATTRIBUTES = ("size", "colour", "shape")  # word order in a demo caption's object phrase
_DEMO_OBJECT = re.compile(r"a ([a-z]+) ([a-z]+) ([a-z]+)")


def demo_caption_objects(caption: str | None) -> list[dict[str, str]] | None:
    """``[{"size", "colour", "shape"}, ...]`` of a demo global caption, or None if not one.

    The caption must read exactly as the demo generator writes it (``"a big red circle"``,
    ``"a ... and a ..."`` or ``"a ..., a ... and a ..."``).
    """
    if not caption:
        return None
    head, sep, last = caption.rpartition(" and ")
    phrases = [*(head.split(", ") if sep else []), last]
    matches = [_DEMO_OBJECT.fullmatch(p) for p in phrases]
    if not all(matches):
        return None
    return [dict(zip(_DEMO_ATTRIBUTES, m.groups(), strict=True)) for m in matches if m]


def _centre(region: Mapping[str, Any]) -> tuple[float, float]:
    return (region["x1"] + region["x2"]) / 2, (region["y1"] + region["y2"]) / 2


def region_labels(sample: Mapping[str, Any], label: str) -> dict[str, str]:
    """``{region_id: label}`` for the regions of ``sample`` that have ``label`` (module doc)."""
    if label not in PROBE_LABELS:
        raise ValueError(f"label must be one of {PROBE_LABELS}, got {label!r}")
    regions = sample.get("regions", [])
    if label == "category":
        return {
            str(r["region_id"]): normalize_text(str(r["text"])).lower()
            for r in regions
            if r.get("text_type") == "category" and normalize_text(str(r["text"]))
        }
    objects = demo_caption_objects(sample.get("global_caption"))
    refexps = sorted((r for r in regions if r.get("text_type") == "refexp"), key=_centre)
    if objects is None or len(objects) != len(refexps):
        return {}
    return {str(r["region_id"]): o[label] for r, o in zip(refexps, objects, strict=True)}


@dataclass
class RegionFeatures:
    """Pooled encoder features of labelled regions, and their labels."""

    features: npt.NDArray[np.float32]  # (K, C_vision), mean of the RoIAlign bins
    region_ids: list[str]  # K region ids, in sample then region order
    labels: dict[str, list[str | None]] = field(default_factory=dict)  # name -> K (None: none)


@torch.no_grad()
def _encode_regions(
    model: GranViT,
    batch: Sequence[tuple[Mapping[str, Any], list[Mapping[str, Any]]]],
    layer: int | None,
    roi_output_size: int,
) -> torch.Tensor:
    """``(K, C)`` features of the given regions of a batch of samples (boxes: pixel xyxy)."""
    size, pixels, boxes, index = model.image_size, [], [], []
    for i, (sample, regions) in enumerate(batch):
        tensor, transform = preprocess_image(sample["image"], size)
        pixels.append(tensor)
        xyxy = [[r["x1"], r["y1"], r["x2"], r["y2"]] for r in regions]
        boxes.append(torch.from_numpy(transform.boxes_to_encoder(xyxy)).float())
        index += [i] * len(regions)
    device = next(model.parameters()).device
    feats = model.encode_image(torch.stack(pixels).to(device), layer)
    pooled = roi_features(
        feats, torch.cat(boxes).to(device), torch.tensor(index, device=device),
        model.patch_grid, size, roi_output_size,
    )  # fmt: skip
    return pooled.mean(dim=(2, 3)).float().cpu()


def region_features(
    model: GranViT,
    samples: Iterable[Mapping[str, Any]],
    labels: Sequence[str],
    batch_size: int = 32,
    layer: int | None = None,
    roi_output_size: int = 2,
    max_images: int | None = None,
) -> RegionFeatures:
    """Encoder features of every region of ``samples`` that has at least one of ``labels``.

    Args:
        model: its encoder is used (eval mode for the call, then restored).
        samples: shard-reader dicts (``image`` PIL RGB, ``regions`` with absolute-pixel xyxy
            boxes); streamed, ``batch_size`` images at a time.
        labels: label names (:data:`PROBE_LABELS`).
        layer: encoder layer (None: last hidden state; an int indexes ``hidden_states``).
        roi_output_size: RoIAlign bins per side before averaging.
        max_images: read at most this many samples (None: all).
    """
    was_training, rows, ids = model.training, [], []
    values: dict[str, list[str | None]] = {name: [] for name in labels}
    model.eval()
    try:
        stream = iter(islice(samples, max_images))
        while chunk := list(islice(stream, batch_size)):
            batch = []
            for sample in chunk:
                per_label = {name: region_labels(sample, name) for name in labels}
                keep = [r for r in sample.get("regions", [])
                        if any(str(r["region_id"]) in d for d in per_label.values())]  # fmt: skip
                if keep:
                    batch.append((sample, keep))
                for r in keep:
                    ids.append(str(r["region_id"]))
                    for name, d in per_label.items():
                        values[name].append(d.get(str(r["region_id"])))
            if batch:
                rows.append(_encode_regions(model, batch, layer, roi_output_size))
    finally:
        model.train(was_training)
    width = model.config.vision.hidden_size
    features = torch.cat(rows).numpy() if rows else np.zeros((0, width), dtype=np.float32)
    return RegionFeatures(features.astype(np.float32), ids, values)


def linear_probe(
    train_x: npt.ArrayLike,
    train_y: Sequence[str],
    val_x: npt.ArrayLike,
    val_y: Sequence[str],
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Fit a logistic regression on ``(train_x (K, C), train_y)``, score it on the val regions.

    Returns ``{"accuracy", "chance", "n_train", "n_val", "classes"}``: val accuracy, the val
    accuracy of the train split's most common label, the region counts and the number of
    train classes. With one train class the "classifier" is that constant answer; with no
    train or no val regions every value but the counts is 0.
    """
    x_train, x_val = np.asarray(train_x, np.float64), np.asarray(val_x, np.float64)
    if len(train_y) != len(x_train) or len(val_y) != len(x_val):
        raise ValueError("features and labels differ in length")
    counts = {"n_train": float(len(train_y)), "n_val": float(len(val_y))}
    if not train_y or not val_y:
        return {"accuracy": 0.0, "chance": 0.0, **counts, "classes": float(len(set(train_y)))}
    majority = Counter(train_y).most_common(1)[0][0]
    truth = np.asarray(val_y, dtype=object)
    if len(set(train_y)) == 1:
        predicted = np.full(len(val_y), majority, dtype=object)
    else:
        # Imported here: scikit-learn takes ~1-3 s to import, and every Kedro command imports
        # this module through the pipeline registry.
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        predicted = classifier.fit(x_train, np.asarray(train_y, dtype=object)).predict(x_val)
    return {
        "accuracy": float((predicted == truth).mean()),
        "chance": float((truth == majority).mean()),
        **counts,
        "classes": float(len(set(train_y))),
    }


def probe_encoder(
    model: GranViT,
    train_samples: Iterable[Mapping[str, Any]],
    val_samples: Iterable[Mapping[str, Any]],
    labels: Sequence[str] = ("shape",),
    batch_size: int = 32,
    layer: int | None = None,
    roi_output_size: int = 2,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    c: float = 1.0,
) -> dict[str, float]:
    """Linear probes of the encoder's region features, one per label (module docstring).

    Returns a flat dict: ``probe/<label>/{accuracy,chance,n_train,n_val,classes}`` per label
    and ``probe/regions_per_s`` (feature extraction, train and val regions together).
    """
    if not labels:
        raise ValueError("labels must name at least one of " + ", ".join(PROBE_LABELS))
    start = time.perf_counter()
    kw = {"batch_size": batch_size, "layer": layer, "roi_output_size": roi_output_size}
    train = region_features(model, train_samples, labels, max_images=max_train_images, **kw)
    val = region_features(model, val_samples, labels, max_images=max_val_images, **kw)
    seconds = time.perf_counter() - start
    out: dict[str, float] = {}
    for name in labels:
        tr = [i for i, v in enumerate(train.labels[name]) if v is not None]
        va = [i for i, v in enumerate(val.labels[name]) if v is not None]
        scores = linear_probe(
            train.features[tr], [str(train.labels[name][i]) for i in tr],
            val.features[va], [str(val.labels[name][i]) for i in va], c=c,
        )  # fmt: skip
        out |= {f"probe/{name}/{k}": v for k, v in scores.items()}
    total = len(train.region_ids) + len(val.region_ids)
    out["probe/regions_per_s"] = total / seconds if seconds > 0 else 0.0
    logger.info("encoder probe: %s", {k: round(v, 4) for k, v in out.items()})
    return out


def probe_with_settings(model: GranViT, shards_dir: Path, cfg: EvaluateParams) -> dict[str, float]:
    """The encoder-only probe of ``model`` with ``cfg.probe``'s settings: fitted on
    ``probe.train_split``, scored on ``cfg.split`` (the evaluation and the ablation probe every
    encoder this way, so their numbers compare)."""
    probe = cfg.probe
    return probe_encoder(
        model,
        split_samples(shards_dir, probe.train_split, probe.max_train_images),
        split_samples(shards_dir, cfg.split, cfg.max_images),
        labels=probe.labels, batch_size=probe.batch_size, layer=probe.layer,
        roi_output_size=probe.roi_output_size, c=probe.c,
    )  # fmt: skip
