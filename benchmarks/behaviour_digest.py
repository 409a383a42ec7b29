"""What a short real run produces, as digests: to check that a refactor changes no behaviour.

Copies the project's ``conf/`` into a scratch folder, adds an environment ``small`` (200 demo
images, the demo preset, 20 / 30 / 40 steps per stage), runs ``kedro run --env small`` for
``data,pretrain,adapt,evaluate`` there with the code that ``PYTHONPATH`` names (default: this
checkout), and prints each stage's weights digest, the shard manifest's hash and the
evaluation metrics as JSON. Run it on two commits and compare the outputs::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python benchmarks/behaviour_digest.py --conf /tmp/before/conf \
        > before.json
    python benchmarks/behaviour_digest.py > after.json && diff before.json after.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STEPS = {"lm_warmup": 20, "stage1": 30, "stage2": 40}
SMALL = {
    "ingest": {"demo": {"n_images": 200}},
    "pretrain": {
        "common": {"training": {"checkpoint_every": 0}},
        "lm_warmup": {"training": {"steps": STEPS["lm_warmup"], "warmup_steps": 2}},
        "stage1": {"training": {"steps": STEPS["stage1"], "warmup_steps": 2}},
    },
    "adapt": {"stage2": {"training": {"steps": STEPS["stage2"], "warmup_steps": 2}}},
    "evaluate": {"report": {"screenshot": False}},
}


def run(conf: Path, workdir: Path) -> dict:
    shutil.copytree(conf, workdir / "conf", ignore=shutil.ignore_patterns("local", "tuned"))
    (workdir / "conf" / "local").mkdir()
    (workdir / "conf" / "small").mkdir()
    (workdir / "conf" / "small" / "parameters.yml").write_text(yaml.safe_dump(SMALL))
    shutil.copy(REPO / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "src").mkdir()
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    env["KEDRO_LOGGING_CONFIG"] = str(workdir / "conf" / "logging.yml")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro), "run", "--env", "small", "--pipelines", "data,pretrain,adapt,evaluate"]
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    models = workdir / "data" / "06_models"
    results = {stage: json.loads((models / f"{stage}_result.json").read_text()) for stage in STEPS}
    report = json.loads((workdir / "data/08_reporting/evaluation_report.json").read_text())
    return {
        "data_version": report["data_version"],
        "weights_digest": {stage: r["weights_digest"] for stage, r in results.items()},
        "final_loss": {stage: r["final_metrics"]["loss"] for stage, r in results.items()},
        "metrics": {k: v for k, v in sorted(report["metrics"].items()) if "_per_s" not in k},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", type=Path, default=REPO / "conf", help="the conf/ to copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="granvit-digest-") as tmp:
        print(json.dumps(run(args.conf, Path(tmp)), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
