"""The streaming ``region_id_unique`` helpers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from granvit_pipeline.regions.validation.ids import (
    BAD_PREFIX,
    DUPLICATE,
    REAPPEARS,
    RegionIdTracker,
    duplicated_all,
    lacks_prefix,
    lacks_prefix_fast,
    run_starts,
)


def test_lacks_prefix_byte_exact_including_offsets_and_unicode() -> None:
    values = pa.array(["x", "a#1", "ab#1", "a#", "é#2", None, "a#b#c", "zz#1"])[1:]
    prefixes = pa.array(["?", "a#", "a#", "a#", "é#", "a#", "a#b#", "zz"])[1:]
    # "ab#1" does not start with "a#"; "a#" has nothing after the prefix; "zz#1" starts with "zz"
    assert lacks_prefix(values, prefixes).tolist() == [False, True, True, False, False, False,
                                                       False]  # fmt: skip


def test_lacks_prefix_fast_matches_exact_check() -> None:
    image_ids = pa.array(["s/1", "s/1", "s/#2", "s/#2", "s/3", "s/3", None])
    values = pa.array(["s/1#0", "s/1#a#b", "s/#2#0", "s/#20", "s/3", "t/3#1", "s/4#1"])
    prefixes = pa.array([None if i is None else i + "#" for i in image_ids.to_pylist()])
    expected = [False, False, False, True, True, True, False]
    assert lacks_prefix_fast(values, image_ids).tolist() == expected
    assert lacks_prefix(values, prefixes).tolist() == expected


def test_duplicated_all_marks_every_occurrence() -> None:
    values = pa.array(["a", "b", "a", None, None, "c"])
    assert duplicated_all(values).tolist() == [True, False, True, False, False, False]
    assert not duplicated_all(pa.array(["a", "b", None])).any()


def test_run_starts() -> None:
    assert run_starts(pa.array(["a", "a", "b", None, None, "b"])).tolist() == [0, 2, 3, 4, 5]
    assert run_starts(pa.array([], pa.string())).tolist() == []


def test_tracker_flags_reappearing_images_across_chunks() -> None:
    tracker = RegionIdTracker()
    first = tracker.check(pa.array(["a", "a", "b"]), pa.array(["a#0", "a#0", "b#0"]))
    assert first.tolist() == [DUPLICATE, DUPLICATE, 0]
    second = tracker.check(pa.array(["c", "a", "d", "c"]), pa.array(["c#0", "a#1", "x#1", "c#1"]))
    assert second.tolist() == [REAPPEARS, REAPPEARS, BAD_PREFIX, REAPPEARS]
    assert tracker.images_seen == 4


def test_tracker_state_survives_merges() -> None:
    tracker = RegionIdTracker()
    n = 70_000  # more than the 65,536 hashes that trigger a merge
    ids = np.char.add("img", np.arange(n).astype(str)).astype(object)
    regions = np.char.add(ids.astype(str), "#0").astype(object)
    assert not tracker.check(pa.array(ids), pa.array(regions)).any()
    again = tracker.check(pa.array(ids[[5, n - 1]]), pa.array(regions[[5, n - 1]]))
    assert again.tolist() == [REAPPEARS, REAPPEARS]
