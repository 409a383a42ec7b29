"""Summary statistics of region records: what a model could get right by chance.

Counts per kind and text type, text diversity, and the chance baselines (always guessing the
most common text, picking a random box of the image) that a trained model must beat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from granvit_pipeline.regions.demo.language import RELATIONS


def demo_statistics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary counts of JSONL records (any source; ``relation_fraction`` is demo-specific)."""
    kinds, regions_per_kind, captions = Counter[str](), Counter[str](), set()
    rows: list[tuple[str, str, float, float]] = []  # text, text type, 1/#boxes, area fraction
    for rec in records:
        regions = rec.get("regions", [])
        kinds[rec["kind"]] += 1
        regions_per_kind[rec["kind"]] += len(regions)
        captions.add(rec.get("global_caption"))
        for r in regions:
            x1, y1, x2, y2 = r["box"]
            area = (x2 - x1) * (y2 - y1) / (rec["width"] * rec["height"])
            rows.append((r["text"], r["text_type"], 1 / len(regions), area))
    texts, n = Counter(row[0] for row in rows), max(len(rows), 1)
    words = [len(row[0].split()) for row in rows]
    top_text, top_count = texts.most_common(1)[0] if texts else ("", 0)
    return {
        "images": sum(kinds.values()),
        "images_per_kind": dict(sorted(kinds.items())),
        "regions": len(rows),
        "regions_per_text_type": dict(sorted(Counter(row[1] for row in rows).items())),
        "mean_objects_per_natural_image": regions_per_kind["natural"] / max(kinds["natural"], 1),
        "mean_lines_per_ocr_image": regions_per_kind["ocr"] / max(kinds["ocr"], 1),
        "distinct_texts": len(texts),
        "distinct_global_captions": len(captions - {None}),
        "most_common_text": top_text,
        "most_common_text_frequency": top_count / n,  # accuracy of always guessing it
        "uniform_text_chance": 1 / max(len(texts), 1),
        "most_common_text_frequency_per_type": {  # the same, per text type
            tt: Counter(r[0] for r in rows if r[1] == tt).most_common(1)[0][1] / count
            for tt, count in sorted(Counter(row[1] for row in rows).items())
        },
        "relation_fraction": sum(any(f" {r} " in row[0] for r in RELATIONS) for row in rows) / n,
        "mean_words_per_text": sum(words) / n,
        "max_words_per_text": max(words, default=0),
        "random_box_chance": sum(row[2] for row in rows) / n,  # pick one of the image's boxes
        "mean_box_area_fraction": sum(row[3] for row in rows) / n,
    }
