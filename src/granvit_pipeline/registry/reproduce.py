"""Reproduce a registered version: what it says it came from, and whether a re-run matches it.

A version's tags (``registry.lineage``) name the git commit, whether the tree was dirty, the
Kedro environment, the data (``data.version``, ``dvc.<path>``), the parameters' digest and the
evaluation metrics. ``kedro models reproduce`` checks the commit out (``registry.checkout``),
pulls the data, re-runs the pipelines and compares the new evaluation report with the tags
here: on the CPU with the fixed seed every metric must be equal (``tolerance`` 0).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from granvit_pipeline.registry.checkout import ReproduceError
from granvit_pipeline.registry.lineage import (
    TAG_DATA_VERSION,
    TAG_EVAL_PARAMS,
    TAG_METRICS,
    TAG_PARAMS_DIGEST,
    TAG_WEIGHTS,
    params_digest,
)

TAG_COMMIT = "git.commit"  # lineage.RUN_TAGS names on the version
TAG_DIRTY = "git.dirty"
TAG_KEDRO_ENV = "kedro.env"
# Report metrics that are throughput (evaluation ``regions_per_s``), not quality.
TIMING_METRICS = ("*_per_s", "*_time_s")


@dataclass(frozen=True)
class Origin:
    """Where a registered version came from, read from its tags."""

    version: str
    commit: str
    dirty: bool
    kedro_env: str | None
    metrics: dict[str, float]
    tags: dict[str, str]


def origin_from_tags(version: str, tags: Mapping[str, str]) -> Origin:
    """The version's origin; raises ``ReproduceError`` when its tags cannot say it."""
    commit = tags.get(TAG_COMMIT)
    if not commit:
        raise ReproduceError(
            f"v{version} has no {TAG_COMMIT} tag: it was not trained in a git checkout, so "
            "there is no code to check out"
        )
    try:
        metrics = json.loads(tags.get(TAG_METRICS) or "")
    except json.JSONDecodeError:
        metrics = None
    if not isinstance(metrics, dict) or not metrics:
        raise ReproduceError(f"v{version} has no {TAG_METRICS} tag: nothing to compare with")
    return Origin(
        str(version), commit, tags.get(TAG_DIRTY) == "true", tags.get(TAG_KEDRO_ENV),
        metrics, dict(tags),
    )  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """One row of the comparison: a metric (within the tolerance) or an identity (equal)."""

    name: str
    registered: Any
    reproduced: Any
    ok: bool
    required: bool = True  # False: shown, no reason to fail (throughput; weights on a GPU)

    @property
    def diff(self) -> float | None:
        numbers = (self.registered, self.reproduced)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            return abs(float(self.reproduced) - float(self.registered))
        return None


def _close(registered: Any, reproduced: Any, tolerance: float) -> bool:
    if registered is None or reproduced is None:
        return False
    a, b = float(registered), float(reproduced)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tolerance


def compare_metrics(
    registered: Mapping[str, Any],
    reproduced: Mapping[str, Any],
    tolerance: float = 0.0,
    timing: Sequence[str] = TIMING_METRICS,
) -> list[Comparison]:
    """Every metric of either report; a metric missing on one side is a mismatch. Metrics
    matching a ``timing`` pattern measure the machine, not the model: shown, not required."""
    return [
        Comparison(key, registered.get(key), reproduced.get(key),
              _close(registered.get(key), reproduced.get(key), tolerance),
              required=not any(fnmatch.fnmatchcase(key, p) for p in timing))
        for key in sorted({*registered, *reproduced})
    ]  # fmt: skip


def compare_identity(
    tags: Mapping[str, str], report: Mapping[str, Any], params_now: str | None
) -> list[Comparison]:
    """What must be the same for the metrics to be comparable: the evaluated data, the
    evaluation protocol and the parameters; the trained weights are shown, not required
    (bit-equal on the CPU, not across GPUs)."""
    model = report.get("model") or {}
    now = {
        TAG_DATA_VERSION: report.get("data_version"),
        TAG_EVAL_PARAMS: params_digest(report["params"]) if "params" in report else None,
        TAG_PARAMS_DIGEST: params_now,
        TAG_WEIGHTS: model.get("weights_digest"),
    }
    return [
        Comparison(tag, tags[tag], now[tag], tags[tag] == now[tag], required=tag != TAG_WEIGHTS)
        for tag in now
        if tag in tags and now[tag] is not None
    ]


def failures(checks: list[Comparison]) -> list[Comparison]:
    return [c for c in checks if c.required and not c.ok]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "-" if value is None else str(value)
    return text if len(text) <= 20 else text[:17] + "..."


def format_table(checks: list[Comparison]) -> str:
    """A plain-text table: name, registered, reproduced, |difference|, verdict."""
    header = ("check", "registered", "reproduced", "|diff|", "")
    rows = [header] + [
        (c.name, _cell(c.registered), _cell(c.reproduced),
         "" if c.diff is None else f"{c.diff:.3g}",
         "ok" if c.ok else ("MISMATCH" if c.required else "differs"))
        for c in checks
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _version_number(ref: str) -> str | None:
    text = ref[1:] if ref[:1] in ("v", "V") else ref
    return text if text.isdigit() else None


def version_tags(registry: Any, ref: str) -> tuple[str, dict[str, str]]:
    """``(version, tags)`` of ``ref``, a version number (``3``, ``v3``) or an alias
    (``champion``) of ``registry`` (a ``ModelRegistry``)."""
    from mlflow.exceptions import MlflowException

    number = _version_number(ref)
    if number is None:
        number = registry.alias_version(ref)
        if number is None:
            raise ReproduceError(
                f"{registry.name} has no version or alias {ref!r} (aliases: "
                f"{', '.join(sorted(_aliases(registry))) or 'none'})"
            )
    try:
        found = registry.client.get_model_version(registry.name, number)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ReproduceError(f"{registry.name} has no version {number}") from err
    return str(found.version), dict(found.tags)


def _aliases(registry: Any) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(registry.client.get_registered_model(registry.name).aliases)
    except MlflowException:
        return {}
