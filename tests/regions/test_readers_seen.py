"""SeenIds: the compact duplicate-id set used while streaming JSONL."""

from granvit_pipeline.regions.readers._seen import SeenIds


def test_reports_exactly_the_repeats_across_table_growth():
    seen = SeenIds(capacity=8)  # forces several doublings
    ids = [f"demo/{i}" for i in range(5000)]
    assert [seen.add(i) for i in ids] == [False] * len(ids)
    assert len(seen) == len(ids)
    assert all(seen.add(i) for i in ids[::7]), "every id added before is a repeat"
    assert len(seen) == len(ids), "repeats are not stored twice"
    assert not seen.add("demo/5000")


def test_memory_is_a_few_bytes_per_id():
    seen = SeenIds()
    for i in range(100_000):
        seen.add(f"source/{i:012d}")
    assert seen._table.nbytes / len(seen) <= 16 * 1.35  # <= 1/2 load, after the last doubling
