"""ROUGE-L, CIDEr and BLEU-4: hand-checked cases, and agreement with pycocoevalcap itself."""

from __future__ import annotations

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from granvit_pipeline.evaluation import caption_metrics, tokenize_caption

TARGETS = [
    "the big red circle left of the square",
    "the small blue square",
    "the yellow triangle above the green cross",
    "hotel",
]


def test_tokenizer_lowercases_and_drops_punctuation_and_whitespace() -> None:
    assert tokenize_caption("  The red-circle, LEFT of\tthe  square. ") == [
        "the", "red", "circle", "left", "of", "the", "square"
    ]  # fmt: skip
    assert tokenize_caption("cafe_24/7!") == ["cafe", "24", "7"]
    assert tokenize_caption("...") == []


def test_identical_texts_score_one() -> None:
    m = caption_metrics(TARGETS[:3], TARGETS[:3])
    assert m["rouge_l"] == pytest.approx(1.0)
    assert m["bleu4"] == pytest.approx(1.0, abs=1e-6)  # every text has >= 4 tokens
    assert m["cider"] > 5.0  # CIDEr-D is x10 with a length penalty; identical texts score high


def test_case_and_punctuation_do_not_count() -> None:
    shouted = [t.upper() + "." for t in TARGETS[:3]]
    assert caption_metrics(shouted, TARGETS[:3]) == caption_metrics(TARGETS[:3], TARGETS[:3])


def test_disjoint_texts_score_zero() -> None:
    preds = ["one two three four five", "six seven eight nine", "ten eleven twelve thirteen", ""]
    m = caption_metrics(preds, TARGETS)
    assert m["rouge_l"] == 0.0
    assert m["cider"] == 0.0
    assert m["bleu4"] == pytest.approx(0.0, abs=1e-6)


def test_rouge_l_of_a_hand_computed_lcs() -> None:
    # target 8 tokens, prediction 6; LCS "the red circle the square" = 5 tokens.
    pred, target = "the red circle above the square", "the big red circle left of the square"
    p, r, beta2 = 5 / 6, 5 / 8, 1.2**2
    expected = (1 + beta2) * p * r / (r + beta2 * p)
    assert expected == pytest.approx(0.696347, abs=1e-6)
    m = caption_metrics([pred, TARGETS[1]], [target, TARGETS[1]])
    assert m["rouge_l"] == pytest.approx((expected + 1.0) / 2)


def test_bleu4_of_a_hand_computed_case() -> None:
    # One 5-token prediction, its 5-token reference with the last word changed: n-gram
    # precisions 4/5, 3/4, 2/3, 1/2; equal lengths, so no brevity penalty.
    m = caption_metrics(["the big red circle left"], ["the big red circle right"])
    assert m["bleu4"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-6)


def test_agrees_with_the_reference_scorers_called_directly() -> None:
    preds = ["the red circle left of a square", "small blue square", "the yellow shape", "hotal"]
    gts = {i: [" ".join(tokenize_caption(t))] for i, t in enumerate(TARGETS)}
    res = {i: [" ".join(tokenize_caption(p))] for i, p in enumerate(preds)}
    m = caption_metrics(preds, TARGETS)
    assert m["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0])
    assert m["cider"] == pytest.approx(Cider().compute_score(gts, res)[0])
    assert m["bleu4"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    assert 0.0 < m["rouge_l"] < 1.0 and m["cider"] > 0.0


def test_empty_and_mismatched_inputs() -> None:
    assert caption_metrics([], []) == {"rouge_l": 0.0, "cider": 0.0, "bleu4": 0.0}
    with pytest.raises(ValueError, match="targets"):
        caption_metrics(["a"], [])
