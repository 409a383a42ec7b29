from __future__ import annotations

import random

import pytest

from granvit_pipeline.model.box_codec import (
    BoxParseError,
    coordinate_strings,
    format_box,
    parse_box,
    try_parse_box,
)


def test_format_box_layout_and_rounding() -> None:
    assert format_box([0.123, 0.3449, 0.5651, 0.78]) == "[0.12, 0.34, 0.57, 0.78]"
    assert format_box([0.1, 0.2, 0.3, 0.4], precision=3) == "[0.100, 0.200, 0.300, 0.400]"


def test_format_box_clamps_to_unit_interval() -> None:
    assert format_box([-0.01, 0.5, 1.02, 1.0]) == "[0.00, 0.50, 1.00, 1.00]"


@pytest.mark.parametrize(
    "bad", [[0.1, 0.2, 0.3], [10.0, 20.0, 30.0, 40.0], [0.1, float("nan"), 0.2, 0.3]]
)
def test_format_box_rejects_wrong_format(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        format_box(bad)


def test_round_trip_over_random_boxes() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        a, b = sorted(rng.random() for _ in range(2))
        c, d = sorted(rng.random() for _ in range(2))
        box = (a, c, b, d)
        for precision in (2, 3):
            parsed = parse_box(format_box(box, precision))
            assert all(
                abs(p - v) <= 0.5 * 10**-precision + 1e-12 for p, v in zip(parsed, box, strict=True)
            )
            assert format_box(parsed, precision) == format_box(box, precision)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[0.1, 0.2, 0.3]",
        "[0.1,0.2,0.3,0.4,0.5]",
        "[0.1, 0.2, 0.3, 0.4, 0.5]",
        "[1.2, 0.2, 1.3, 0.4]",
        "[a, b, c, d]",
        "[0.5, 0.2, 0.3, 0.4]",
        "[0.1, 0.5, 0.3, 0.4]",
        "[0.1, 0.2, 0.3, 0.4] trailing",
        "box: [0.1, 0.2, 0.3, 0.4]",
        "[-0.1, 0.2, 0.3, 0.4]",
        "(0.1, 0.2, 0.3, 0.4)",
        "[0.1 0.2 0.3 0.4]",
    ],
)
def test_parse_box_rejects_malformed(text: str) -> None:
    with pytest.raises(BoxParseError) as info:
        parse_box(text)
    assert info.value.text == text
    assert try_parse_box(text) is None


def test_parse_box_accepts_edges_and_degenerate() -> None:
    assert parse_box("[0.00, 0.00, 1.00, 1.00]") == (0.0, 0.0, 1.0, 1.0)
    assert parse_box("[0.5, 0.5, 0.5, 0.5]") == (0.5, 0.5, 0.5, 0.5)
    assert try_parse_box("[0.1, 0.2, 0.3, 0.4]") == (0.1, 0.2, 0.3, 0.4)


def test_coordinate_strings() -> None:
    values = coordinate_strings(2)
    assert len(values) == 101 and values[0] == "0.00" and values[-1] == "1.00"
    assert len(set(values)) == 101
