"""Boxes as text: normalised ``xyxy`` in ``[0, 1]``, e.g. ``"[0.12, 0.34, 0.56, 0.78]"``.

The text form is the only box format the LLM reads or writes (see
:mod:`granvit_pipeline.regions.boxes`). :func:`parse_box` is strict on purpose: a malformed
answer is reported as a failure (``BoxParseError``), never repaired or guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Box = tuple[float, float, float, float]

_NUMBER = r"(\d+(?:\.\d+)?)"
_BOX_RE = re.compile(r"\[" + r", ".join([_NUMBER] * 4) + r"\]")


class BoxParseError(ValueError):
    """A text that is not exactly one well-formed normalised box; ``.text`` holds it."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"cannot parse box from {text!r}: {reason}")
        self.text = text
        self.reason = reason


def coordinate_strings(precision: int = 2) -> list[str]:
    """Every coordinate string :func:`format_box` can write: ``"0.00" .. "1.00"`` at 2."""
    if precision < 1:
        raise ValueError(f"precision must be >= 1, got {precision}")
    steps = 10**precision
    return [f"{i / steps:.{precision}f}" for i in range(steps + 1)]


def format_box(box_norm_xyxy: Sequence[float], precision: int = 2) -> str:
    """Normalised xyxy box -> ``"[x1, y1, x2, y2]"``, each value clamped to [0, 1] and rounded.

    Raises ``ValueError`` for anything but 4 finite numbers (e.g. a pixel box is out of range
    after clamping only if its caller forgot to normalise -- so values > 1.5 raise too).
    """
    values = [float(v) for v in box_norm_xyxy]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"expected 4 finite normalised coordinates, got {box_norm_xyxy!r}")
    if any(v < -0.5 or v > 1.5 for v in values):
        raise ValueError(f"box {values} is not normalised to [0, 1] (pixel coordinates?)")
    if precision < 1:
        raise ValueError(f"precision must be >= 1, got {precision}")
    text = ", ".join(f"{min(max(v, 0.0), 1.0):.{precision}f}" for v in values)
    return f"[{text}]"


def parse_box(text: str) -> Box:
    """``"[x1, y1, x2, y2]"`` -> 4 floats; raises :class:`BoxParseError` on anything else.

    Accepted: exactly the layout :func:`format_box` writes (any number of decimals), values in
    ``[0, 1]`` with ``x1 <= x2`` and ``y1 <= y2``. Leading/trailing garbage, missing or extra
    numbers, other separators, negatives and out-of-range values are all errors.
    """
    match = _BOX_RE.fullmatch(text)
    if match is None:
        raise BoxParseError(text, "not of the form '[x1, y1, x2, y2]' with 4 plain numbers")
    x1, y1, x2, y2 = (float(g) for g in match.groups())
    if any(v > 1.0 for v in (x1, y1, x2, y2)):
        raise BoxParseError(text, "coordinates must lie in [0, 1]")
    if x1 > x2 or y1 > y2:
        raise BoxParseError(text, "needs x1 <= x2 and y1 <= y2")
    return x1, y1, x2, y2


def try_parse_box(text: str) -> Box | None:
    """:func:`parse_box`, or ``None`` when the text is not a valid box."""
    try:
        return parse_box(text)
    except BoxParseError:
        return None
