"""OCR word accuracy and ANLS on hand-checked cases."""

from __future__ import annotations

import pytest

from granvit_pipeline.evaluation import anls, normalized_levenshtein, ocr_metrics


def test_normalized_levenshtein_by_hand() -> None:
    assert normalized_levenshtein("hotel", "hotal") == pytest.approx(1 / 5)  # 1 substitution
    assert normalized_levenshtein("cafe", "cafe shop") == pytest.approx(5 / 9)  # 5 insertions
    assert normalized_levenshtein("", "") == 0.0
    assert normalized_levenshtein("", "abc") == 1.0


def test_anls_scores_similarity_below_the_threshold_and_zero_at_or_above_it() -> None:
    preds = ["hotel", "hotal", "cafe", "ax", "EXIT ", ""]
    targets = ["hotel", "hotel", "cafe shop", "ab", "exit", "bus"]
    # 1; 1 - 1/5; NL 5/9 >= 0.5 -> 0; NL exactly 0.5 -> 0; case/space-insensitive -> 1; 0
    assert anls(preds, targets) == pytest.approx((1 + 0.8 + 0 + 0 + 1 + 0) / 6)
    # a looser threshold keeps the 0.5 case: 1 - 0.5
    assert anls(["ax"], ["ab"], threshold=0.6) == pytest.approx(0.5)


def test_ocr_metrics_exact_match_and_counts() -> None:
    m = ocr_metrics(["free  wifi", "Open", "milk tea"], ["free wifi", "open", "milk"])
    assert m["exact_match"] == pytest.approx(2 / 3)
    assert m["anls"] == pytest.approx((1 + 1 + 0) / 3)  # "milk tea" vs "milk": NL 4/8 -> 0
    assert m["n"] == 3
    assert ocr_metrics([], []) == {"exact_match": 0.0, "anls": 0.0, "n": 0.0}


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="targets"):
        ocr_metrics(["a"], [])
    with pytest.raises(ValueError, match="threshold"):
        anls(["a"], ["a"], threshold=0.0)
