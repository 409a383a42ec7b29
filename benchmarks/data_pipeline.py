"""Data pipeline throughput and memory: read -> validate -> shard on N synthetic regions.

    .venv/bin/python benchmarks/data_pipeline.py                      # 1M regions
    .venv/bin/python benchmarks/data_pipeline.py --regions 1000000 10000000

Each stage runs in its own process, so its peak RSS (``ru_maxrss``) is its own. Synthetic
data: our JSONL format, 6 regions per 512x512 image, images drawn from a pool of small real PNG
files (the image checks are measured separately on real files: they cost per image, not per
region). The baseline, in the same run, is the obvious implementation of validation: the
Great Expectations suite alone on the same rows (pandas), which gives no per-row reasons.
Prints one table; extrapolates to Gran-29M (183.6M regions, 29.5M images).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

GRAN29M_REGIONS = 183_600_000
REGIONS_PER_IMAGE = 6
POOL = 64


def _write_inputs(workdir: Path, regions: int) -> Path:
    """JSONL with ``regions`` regions; returns its path (reused when already there)."""
    from PIL import Image

    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(POOL):
        Image.new("RGB", (16, 16), (i * 3 % 256, 90, 200)).save(images / f"{i}.png")
    path = workdir / f"regions_{regions}.jsonl"
    if path.exists():
        return path
    with open(f"{path}.tmp", "w") as out:
        for img in range(-(-regions // REGIONS_PER_IMAGE)):
            n = min(REGIONS_PER_IMAGE, regions - img * REGIONS_PER_IMAGE)
            boxes = [
                {
                    "id": str(r),
                    "box": [r * 20.0, 10.0, r * 20.0 + 150 + img % 50, 170.0],
                    "text": f"object {r} of image {img % 997}",
                    "text_type": "caption",
                }
                for r in range(n)
            ]
            record = {
                "image_id": str(img),
                "image": f"{img % POOL}.png",
                "width": 512,
                "height": 512,
                "kind": "natural",
                "global_caption": "a scene",
                "regions": boxes,
            }
            out.write(json.dumps(record) + "\n")
    os.replace(f"{path}.tmp", path)
    return path


def stage_read(workdir: Path, regions: int) -> dict:
    from granvit_pipeline.datasets import RegionStream, RegionTableDataset
    from granvit_pipeline.regions.quarantine import Quarantine
    from granvit_pipeline.regions.readers import SourceConfig, read_source

    src = SourceConfig(
        format="jsonl",
        annotations=workdir / f"regions_{regions}.jsonl",
        images=workdir / "images",
        source="bench",
    )
    start = time.perf_counter()
    q = Quarantine()
    RegionTableDataset(str(workdir / f"raw_{regions}")).save(RegionStream(read_source(src, q)))
    return {"seconds": time.perf_counter() - start, "rejected": len(q)}


def _validation_config(gx: bool):
    from granvit_pipeline.regions.validation import ValidationConfig

    return ValidationConfig(check_images=False, run_expectations=gx)


def stage_validate(workdir: Path, regions: int, gx: bool) -> dict:
    from granvit_pipeline.datasets.region_table import RegionTable
    from granvit_pipeline.regions.validation import drop_rejected, find_rejections

    table = RegionTable(workdir / f"raw_{regions}")
    start = time.perf_counter()
    result = find_rejections(table.batches(), _validation_config(gx))
    pass1 = time.perf_counter() - start
    kept = sum(b.num_rows for b in drop_rejected(table.batches(), result.rejected_region_ids))
    return {
        "seconds": time.perf_counter() - start,
        "pass1_seconds": pass1,
        "kept": kept,
        "rejected": result.quarantine.num_rows,
        "timings": result.summary.timings,
    }


def stage_gx_only(workdir: Path, regions: int, rows: int = 200_000) -> dict:
    """Baseline: the GX suite alone on the first ``rows`` rows."""
    import pyarrow as pa

    from granvit_pipeline.datasets.region_table import RegionTable
    from granvit_pipeline.regions.validation.expectations import (
        RegionSuiteRunner,
        build_region_suite,
        run_region_suite,
    )

    batches, n = [], 0
    for b in RegionTable(workdir / f"raw_{regions}").batches():
        batches.append(b)
        n += b.num_rows
        if n >= rows:
            break
    data = pa.Table.from_batches(batches).slice(0, rows)
    runner, suite = RegionSuiteRunner(), build_region_suite(_validation_config(True))
    run_region_suite(data.slice(0, 1000), suite, runner)  # warm-up (context, metrics)
    start = time.perf_counter()
    run_region_suite(data, suite, runner)
    return {"seconds": time.perf_counter() - start, "rows": data.num_rows}


def stage_shard(workdir: Path, regions: int) -> dict:
    from granvit_pipeline.datasets.region_table import RegionTable
    from granvit_pipeline.regions.shards import ShardConfig, plan_shards, write_shards

    cfg = ShardConfig(max_shard_bytes=64 * 2**20, workers=2)
    start = time.perf_counter()
    specs = plan_shards(RegionTable(workdir / f"raw_{regions}").batches(), cfg)
    manifest = write_shards(specs, workdir / f"shards_{regions}", cfg)
    total = sum(s["bytes"] for s in manifest["shards"])
    return {
        "seconds": time.perf_counter() - start,
        "shards": len(manifest["shards"]),
        "mb": total / 2**20,
    }


def stage_image_checks(workdir: Path, images: int = 2000) -> dict:
    """Images/s of the decode checks on real demo PNGs (64x64) with 2 threads."""
    from granvit_pipeline.regions.demo import DemoConfig, generate_demo
    from granvit_pipeline.regions.image_checks import ImageChecker, ImageRef

    folder = workdir / "demo_images"
    folder.mkdir(exist_ok=True)
    items = []
    for item in generate_demo(DemoConfig(n_images=images)):
        path = folder / Path(item.name).name
        path.write_bytes(item.png)
        rec = item.record
        items.append(ImageRef(rec["image_id"], str(path), rec["width"], rec["height"]))
    start = time.perf_counter()
    with ImageChecker(89_478_485, 2, None) as checker:
        failed = sum(1 for result in checker.check(items) if result.rule is not None)
    return {"seconds": time.perf_counter() - start, "images": images, "failed": failed}


STAGES = {
    "read": stage_read,
    # Row rules + paper filters + the anti-join pass: the per-row work that scales with N.
    "validate": lambda w, n: stage_validate(w, n, gx=False),
    # The same plus the GX contract check on the accepted rows, up to its row budget (200k).
    "validate+gx": lambda w, n: stage_validate(w, n, gx=True),
    "gx_only": stage_gx_only,  # baseline: the GX suite alone
    "shard": stage_shard,
}


def _child(stage: str, workdir: Path, regions: int) -> dict:
    """Run one stage in a fresh process; returns its result plus its peak RSS in MiB."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        stage,
        "--workdir",
        str(workdir),
        "--regions",
        str(regions),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"stage {stage} failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/granvit_bench"))
    parser.add_argument("--child")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        fn = stage_image_checks if args.child == "image_checks" else STAGES[args.child]
        result = (
            fn(args.workdir) if args.child == "image_checks" else fn(args.workdir, args.regions[0])
        )
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.regions:
        start = time.perf_counter()
        _write_inputs(args.workdir, n)
        print(
            f"# {n:,} regions: synthetic JSONL ready in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        for stage in STAGES:
            r = _child(stage, args.workdir, n)
            count = r.get("rows", n)
            rows.append((n, stage, count / r["seconds"], r["peak_rss_mib"], r))
            print(
                f"{n:>11,} {stage:<14} {count / r['seconds']:>12,.0f} regions/s "
                f"{r['peak_rss_mib']:>8.0f} MiB peak  {json.dumps(r)}",
                flush=True,
            )
    img = _child("image_checks", args.workdir, 0)
    print(f"image checks: {img['images'] / img['seconds']:,.0f} images/s (2 threads, 64x64 PNG)")
    _summary(rows, img)


def _summary(rows: list, img: dict) -> None:
    by = {(n, s): (rate, rss) for n, s, rate, rss, _ in rows}
    ns = sorted({n for n, *_ in rows})
    print("\n| regions | stage | regions/s | peak RSS MiB | Gran-29M (183.6M regions) |")
    print("| --- | --- | --- | --- | --- |")
    for n, stage, rate, rss, _ in rows:
        eta = GRAN29M_REGIONS / rate / 3600
        print(f"| {n:,} | {stage} | {rate:,.0f} | {rss:.0f} | {eta:.2f} h |")
    if len(ns) > 1:
        for stage in STAGES:
            ratio = by[(ns[-1], stage)][1] / by[(ns[0], stage)][1]
            print(f"peak RSS {stage}: {ns[-1]:,} vs {ns[0]:,} regions = {ratio:.2f}x")
    n = ns[0]
    for n_, stage, _, _, r in rows:
        if stage == "validate":
            rules = n_ / r["timings"]["row_rules_s"]
            print(
                f"{n_:,} regions: validate pass 1 (read Parquet + rules + filters) "
                f"{n_ / r['pass1_seconds']:,.0f} regions/s; rule evaluation alone {rules:,.0f}/s"
            )
    ratio = by[(n, "validate")][0] / by[(n, "gx_only")][0]
    print(f"validation (rules + filters) vs the GX-alone baseline: {ratio:.1f}x regions/s")
    gran_images = 29_500_000 / (img["images"] / img["seconds"]) / 3600
    print(f"image checks for Gran-29M's 29.5M images at this rate: {gran_images:.1f} h")


if __name__ == "__main__":
    main()
