"""Bbox2Caption text quality: ROUGE-L, CIDEr and BLEU-4 with the COCO caption toolkit's scorers.

The scores come from ``pycocoevalcap`` (the reference implementation of the COCO caption
evaluation), called on our own tokens. Only its pure-Python scorers are used: not its PTB
tokenizer (a Java subprocess), nor METEOR or SPICE (Java too).

Tokenization (:func:`tokenize_caption`): lowercase, then every maximal run of letters and digits
is one token; whitespace and punctuation separate tokens and are dropped. This is what the COCO
toolkit's PTB step followed by its punctuation removal gives on plain captions
(``"The red circle."`` -> ``the red circle``).

Each region has exactly one reference text (its ground-truth text), so:

* ``rouge_l``: mean over regions of the sentence-level ROUGE-L F-score (LCS of tokens,
  ``beta = 1.2`` as in the toolkit); the paper's Bbox2Caption metric.
* ``cider``: CIDEr-D as the toolkit computes it (n = 1..4, Gaussian length penalty
  ``sigma = 6``, clipped counts, x10). Its IDF comes from the references of the evaluated set,
  so it is a corpus metric: meaningless on a handful of regions (one region always scores 0).
* ``bleu4``: corpus BLEU-4 (closest reference length for the brevity penalty). Texts shorter
  than 4 tokens contribute no 4-grams; on a set of mostly 2-3 word texts BLEU-4 is small even
  for good answers, which is the metric's definition, not a bug.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

CAPTION_METRICS: tuple[str, ...] = ("rouge_l", "cider", "bleu4")
_TOKEN = re.compile(r"[^\W_]+")  # letters and digits (any script); "_" counts as punctuation


def tokenize_caption(text: str) -> list[str]:
    """Lowercased letter/digit runs of ``text`` (see the module docstring)."""
    return _TOKEN.findall(text.lower())


def coco_inputs(
    preds: Sequence[str], targets: Sequence[str]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """``(gts, res)`` in the toolkit's format: ``{i: [tokens joined by " "]}`` per region."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    gts = {i: [" ".join(tokenize_caption(t))] for i, t in enumerate(targets)}
    res = {i: [" ".join(tokenize_caption(p))] for i, p in enumerate(preds)}
    return gts, res


def caption_metrics(preds: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """ROUGE-L, CIDEr(-D) and BLEU-4 of ``preds`` against one reference text each.

    Args:
        preds: ``N`` generated region texts.
        targets: ``N`` ground-truth region texts, in the same order.
    Returns:
        ``{"rouge_l", "cider", "bleu4"}`` (module docstring); all 0 when ``N == 0``.
    """
    gts, res = coco_inputs(preds, targets)
    if not gts:
        return dict.fromkeys(CAPTION_METRICS, 0.0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"rouge_l": float(rouge), "cider": float(cider), "bleu4": float(bleu[3])}
