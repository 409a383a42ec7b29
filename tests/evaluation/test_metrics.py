"""Box IoU, REC accuracy and exact match on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from granvit_pipeline.evaluation import (
    exact_match,
    exact_match_chance,
    paired_iou,
    rec_metrics,
)


def test_iou_of_a_shifted_box_pixels_and_normalised_agree() -> None:
    # 10x10 box shifted right by 5: intersection 50, union 150 -> 1/3.
    iou_px = paired_iou([[5, 0, 15, 10]], [[0, 0, 10, 10]])
    iou_norm = paired_iou([[0.05, 0.0, 0.15, 0.1]], [[0.0, 0.0, 0.1, 0.1]])
    assert iou_px == pytest.approx([1 / 3])
    assert iou_norm == pytest.approx([1 / 3])


def test_iou_is_paired_not_all_against_all() -> None:
    pred = [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]
    gt = [[0, 0, 10, 10], [0, 0, 20, 10], [0, 0, 10, 10]]
    assert paired_iou(pred, gt) == pytest.approx([1.0, 0.5, 0.0])


def test_iou_of_two_empty_boxes_is_zero_and_bad_boxes_raise() -> None:
    assert paired_iou([[0.2, 0.2, 0.2, 0.2]], [[0.2, 0.2, 0.2, 0.2]]) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="x1 <= x2"):
        paired_iou([[10, 0, 5, 10]], [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="ground-truth"):
        paired_iou([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 1, 1]])


def test_rec_threshold_is_inclusive_at_exactly_one_half() -> None:
    gt = [[0.0, 0.0, 0.5, 0.5]] * 3
    # half the gt (IoU exactly 0.5, binary-exact numbers), slightly less, identical.
    preds = ["[0.00, 0.00, 0.50, 0.25]", "[0.00, 0.00, 0.50, 0.24]", "[0.00, 0.00, 0.50, 0.50]"]
    m = rec_metrics(preds, gt)
    assert m["acc@0.5"] == pytest.approx(2 / 3)
    assert m["mean_iou"] == pytest.approx((0.5 + 0.48 + 1.0) / 3)
    assert m["unparseable_rate"] == 0.0
    assert m["n"] == 3


def test_unparseable_predictions_are_wrong_with_iou_zero_and_counted() -> None:
    gt = np.array([[0.1, 0.1, 0.4, 0.4]] * 4)
    preds = [
        "[0.10, 0.10, 0.40, 0.40]",
        "[0.10, 0.10, 0.40]",
        "the red circle",
        "[0.4, 0.1, 0.1, 0.4]",
    ]
    m = rec_metrics(preds, gt)
    assert m["unparseable_rate"] == pytest.approx(0.75)  # 3 numbers, words, x1 > x2
    assert m["acc@0.5"] == pytest.approx(0.25)
    assert m["mean_iou"] == pytest.approx(0.25)


def test_rec_metrics_other_threshold_and_empty_and_mismatch() -> None:
    m = rec_metrics(["[0.00, 0.00, 0.50, 0.25]"], [[0.0, 0.0, 0.5, 0.5]], threshold=0.7)
    assert m["acc@0.7"] == 0.0
    assert rec_metrics([], np.zeros((0, 4))) == {
        "acc@0.5": 0.0, "mean_iou": 0.0, "unparseable_rate": 0.0, "n": 0.0
    }  # fmt: skip
    with pytest.raises(ValueError, match="predictions"):
        rec_metrics(["[0.0, 0.0, 1.0, 1.0]"], np.zeros((2, 4)))


def test_grounding_split_tells_the_wrong_region_from_no_region() -> None:
    named, other = [0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]
    image = [named, other]
    preds = [
        "[0.00, 0.00, 0.20, 0.20]",  # the named region
        "[0.50, 0.50, 0.90, 0.90]",  # another region of the image: a grounding error
        "[0.30, 0.00, 0.45, 0.15]",  # on no region: a localisation error
        "not a box",
    ]
    m = rec_metrics(preds, [named] * 4, image_boxes_norm=[image] * 4)
    assert m["acc@0.5"] == pytest.approx(0.25)
    assert m["any_object@0.5"] == pytest.approx(0.5)
    assert m["wrong_object@0.5"] == pytest.approx(0.25)
    assert "any_object@0.5" not in rec_metrics(preds, [named] * 4)
    with pytest.raises(ValueError, match="image box lists"):
        rec_metrics(preds, [named] * 4, image_boxes_norm=[image])


def test_exact_match_normalises_whitespace_only() -> None:
    preds = ["the  red circle ", "The red circle", "the red circle."]
    targets = ["the red circle"] * 3
    assert exact_match(preds, targets) == pytest.approx(1 / 3)
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_chance_level_is_the_share_of_the_most_common_target() -> None:
    targets = ["the circle", "the circle ", "the square", "for"]
    assert exact_match_chance(targets) == pytest.approx(0.5)
    # the constant guess "the circle" scores exactly the chance level
    assert exact_match(["the circle"] * 4, targets) == pytest.approx(exact_match_chance(targets))
    assert exact_match_chance([]) == 0.0
