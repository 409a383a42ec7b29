"""The language of the demo scenes: referring expressions and global captions.

Pure functions of the scene's objects (see :mod:`.scenes` for how the scenes are drawn): an
expression names the *fewest* attributes that pick its object out, and twins are told apart by
a relation to a uniquely described anchor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

Box = tuple[float, float, float, float]

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
# Attribute subsets tried for a referring expression: fewest first, shape first (a real noun).
ATTRIBUTE_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    c for n in (1, 2, 3) for c in itertools.combinations(("shape", "colour", "size"), n)
)


@dataclass(frozen=True)
class ShapeObject:
    """Ground truth of one drawn shape (natural images)."""

    shape: str
    colour: str
    size: str
    box: Box  # tight box of the drawn pixels, absolute xyxy

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def _phrase(obj: ShapeObject, subset: tuple[str, ...]) -> str:
    words = [getattr(obj, a) for a in ("size", "colour") if a in subset]
    return " ".join(["the", *words, obj.shape if "shape" in subset else "shape"])


def _minimal_subset(obj: ShapeObject, others: list[ShapeObject]) -> tuple[str, ...]:
    """The first subset in :data:`ATTRIBUTE_SUBSETS` that no object in ``others`` matches."""
    unique = (
        s for s in ATTRIBUTE_SUBSETS
        if all(any(getattr(o, a) != getattr(obj, a) for a in s) for o in others)
    )  # fmt: skip
    return next(unique, ATTRIBUTE_SUBSETS[-1])  # all three: only twins remain (caller handles)


def _relation_score(rel: str, obj: ShapeObject, anchor: ShapeObject) -> float:
    """How far ``obj`` is ``rel`` the anchor (pixels between centres; negative: the opposite)."""
    (x, y), (ax, ay) = obj.centre, anchor.centre
    return {"left of": ax - x, "right of": x - ax, "above": ay - y, "below": y - ay}[rel]


def referring_expressions(objects: tuple[ShapeObject, ...], margin: float) -> list[str] | None:
    """One expression per object that picks out exactly it (module docstring), or None."""
    key = [(o.shape, o.colour, o.size) for o in objects]
    anchors = [o for o, k in zip(objects, key, strict=True) if key.count(k) == 1]
    texts = []
    for i, obj in enumerate(objects):
        twins = [o for j, o in enumerate(objects) if j != i and key[j] == key[i]]
        non_twins = [o for o, k in zip(objects, key, strict=True) if k != key[i]]
        phrase = _phrase(obj, _minimal_subset(obj, non_twins))
        if twins:  # the anchor and relation that separate obj from its twins most clearly
            scored = [
                (min(_relation_score(rel, obj, a), *(-_relation_score(rel, t, a) for t in twins)),
                 rel, a) for a, rel in itertools.product(anchors, RELATIONS)
            ]  # fmt: skip
            score, rel, anchor = max(scored, key=lambda c: c[0], default=(-1.0, "", obj))
            if score < max(margin, 0.5):
                return None
            others = [o for o in objects if o is not anchor]
            phrase = f"{phrase} {rel} {_phrase(anchor, _minimal_subset(anchor, others))}"
        texts.append(phrase)
    return texts


def global_caption(objects: tuple[ShapeObject, ...]) -> str:
    parts = [f"a {o.size} {o.colour} {o.shape}" for o in sorted(objects, key=lambda o: o.centre)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
