"""Stand-in for ``kedro run --pipelines <stage>`` in the DVC tests: ``python fake_stage.py NAME``.

Reads the stage from ``dvc.yaml``, fails when a data dependency is missing (as Kedro would),
and writes every declared out from a digest of the data deps and params, so a changed input
changes the outs and DVC re-runs what is downstream. Appends NAME to ``$FAKE_RUN_LOG``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import reduce
from pathlib import Path

import yaml

SHARD_BYTES = 256 * 1024  # per file of a folder out: a few shards' worth of bytes to move


def _param(path: str, key: str) -> object:
    data = yaml.safe_load(Path(path).read_text())
    return reduce(lambda node, part: node[part], key.split("."), data)


def digest(stage: dict) -> str:
    h = hashlib.sha256()
    for dep in stage.get("deps", []):
        path = Path(dep)
        if not dep.startswith("data/"):
            continue  # code: DVC tracks it; a code change re-runs this stage
        if not path.exists():
            sys.exit(f"missing input {dep}")
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                h.update(str(f).encode() + f.read_bytes())
    for entry in stage.get("params", []):
        for path, keys in entry.items():
            for key in keys:
                h.update(f"{path}:{key}={json.dumps(_param(path, key), sort_keys=True)}".encode())
    return h.hexdigest()


def write_outs(stage: dict, name: str, hexdigest: str) -> None:
    for entry in stage.get("outs", []) + stage.get("metrics", []):
        path = Path(next(iter(entry)) if isinstance(entry, dict) else entry)
        if path.exists():
            sys.exit(f"{path} exists: DVC removes a stage's outs before running it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix:  # a file: JSON the metrics commands can read
            score = int(hexdigest[:6], 16) / 0xFFFFFF
            path.write_text(json.dumps({"stage": name, "digest": hexdigest, "score": score}))
            continue
        path.mkdir()
        block = hashlib.sha256(hexdigest.encode()).digest()
        for i in range(3):
            payload = (block + i.to_bytes(4, "big")) * (SHARD_BYTES // (len(block) + 4))
            (path / f"part-{i:06d}.bin").write_bytes(payload)
        (path / "manifest.json").write_text(json.dumps({"digest": hexdigest}))


def main(name: str) -> None:
    stage = yaml.safe_load(Path("dvc.yaml").read_text())["stages"][name]
    write_outs(stage, name, digest(stage))
    with open(os.environ["FAKE_RUN_LOG"], "a") as log:
        log.write(name + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
