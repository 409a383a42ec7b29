"""OCR region metrics: exact-match word accuracy and ANLS.

An OCR region is a target region with ``text_type == "ocr"`` (a word or a short line); its
Bbox2Caption answer is the transcription. Both metrics compare case-insensitively after
whitespace normalisation (runs of whitespace -> one space, ends stripped), as scene-text word
accuracy and the ST-VQA / DocVQA ANLS evaluation do.

ANLS (Average Normalized Levenshtein Similarity; Biten et al., ICCV 2019) with one reference per
region: ``NL = levenshtein(pred, gt) / max(len(pred), len(gt))`` (characters, unit costs;
``0`` when both are empty), the region scores ``1 - NL`` if ``NL < threshold`` (0.5) and ``0``
otherwise, and ANLS is the mean over regions. The distance is rapidfuzz's (a maintained C++
implementation), not our own.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from granvit_pipeline.model.tokenizer import normalize_text

ANLS_THRESHOLD = 0.5


def _canonical(text: str) -> str:
    return normalize_text(text).lower()


def normalized_levenshtein(pred: str, target: str) -> float:
    """Levenshtein distance / length of the longer string, in ``[0, 1]`` (0 if both empty).

    Compares the texts exactly as given (no normalisation).
    """
    return float(Levenshtein.normalized_distance(pred, target))


def anls(preds: Sequence[str], targets: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of ``preds`` against one reference each (module docstring); 0 when empty."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not preds:
        return 0.0
    scores = []
    for pred, target in zip(preds, targets, strict=True):
        nl = normalized_levenshtein(_canonical(pred), _canonical(target))
        scores.append(1.0 - nl if nl < threshold else 0.0)
    return sum(scores) / len(scores)


def ocr_metrics(
    preds: Sequence[str], targets: Sequence[str], threshold: float = ANLS_THRESHOLD
) -> dict[str, float]:
    """Word accuracy and ANLS of OCR-region transcriptions.

    Args:
        preds: ``N`` generated transcriptions.
        targets: ``N`` ground-truth region texts, in the same order.
        threshold: ANLS cut-off: a normalised distance at or above it scores 0.
    Returns:
        ``{"exact_match", "anls", "n"}``: the share of regions transcribed exactly
        (case-insensitive, whitespace-normalised), ANLS, and ``N``. All 0 when ``N == 0``.
    """
    score = anls(preds, targets, threshold)  # also checks the lengths
    hits = sum(_canonical(p) == _canonical(t) for p, t in zip(preds, targets, strict=True))
    n = len(preds)
    return {"exact_match": hits / n if n else 0.0, "anls": score, "n": float(n)}
