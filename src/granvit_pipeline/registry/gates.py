"""Promotion gates: does a challenger replace the champion? Pure functions, no MLflow.

Rules (configured by :class:`~granvit_pipeline.registry.config.PromotionConfig`):

1. Floors: every floor holds on the challenger's metrics (a missing or NaN metric fails).
2. No champion yet: the floors decide.
3. The champion was scored on another evaluation set (data version, split, image count or
   evaluate parameters):
   the numbers are not comparable; ``on_eval_set_mismatch`` says whether the floors alone
   decide (``floors_only``) or nothing moves (``reject``).
4. Same evaluation set: no ``no_regression`` metric is worse than the champion's by more than
   its margin, and, with ``require_improvement``, at least one is better by more than
   ``min_improvement``. So an identical model on identical data (a tie) is not promoted
   unless ``require_improvement`` is off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from granvit_pipeline.registry.config import Floor, NoRegression, PromotionConfig

# Metrics are read back from JSON tags: equal values compare equal, but keep float noise in
# arithmetic (champion - margin) from deciding a tie.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class EvalSet:
    """What a model was scored on: results on different sets are not comparable."""

    data_version: str | None  # shard manifest content hash
    split: str | None
    images: int | None
    protocol: str | None = None  # digest of the evaluate parameters (tasks, probe settings)

    def describe(self) -> str:
        protocol = f", evaluate params {self.protocol[:12]}" if self.protocol else ""
        return f"data {self.data_version}, split {self.split}, {self.images} images{protocol}"


@dataclass(frozen=True)
class Candidate:
    """A registered (or about to be registered) model version and its evaluation."""

    version: str | None
    metrics: Mapping[str, float]
    eval_set: EvalSet
    weights_digest: str | None = None

    @property
    def label(self) -> str:
        return f"v{self.version}" if self.version is not None else "the challenger"


@dataclass(frozen=True)
class GateCheck:
    """One gate's outcome."""

    gate: str  # "floor" | "no_regression" | "improvement" | "eval_set" | "enabled"
    passed: bool
    detail: str  # human readable, with the numbers


@dataclass(frozen=True)
class Decision:
    """Whether to promote, and every check that led there."""

    promote: bool
    champion_version: str | None  # the champion it was compared with (None: none yet)
    checks: list[GateCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # context that is not a gate

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        """Why: the failed checks when rejected, every check when promoted; then the notes."""
        checks = self.checks if self.promote else self.failed
        return [f"{'PASS' if c.passed else 'FAIL'} {c.gate}: {c.detail}" for c in checks] + [
            f"NOTE {n}" for n in self.notes
        ]

    def summary(self) -> str:
        verdict = "promoted" if self.promote else "not promoted"
        return f"{verdict}: " + "; ".join(self.reasons or ["no gates configured"])


def _value(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def check_floor(floor: Floor, metrics: Mapping[str, float]) -> GateCheck:
    value = _value(metrics, floor.metric)
    parts = []
    if floor.min is not None:
        parts.append(f">= {floor.min:g}")
    if floor.max is not None:
        parts.append(f"<= {floor.max:g}")
    bounds = " and ".join(parts)
    if value is None:
        return GateCheck("floor", False, f"{floor.metric} {bounds}: missing from the evaluation")
    ok = (floor.min is None or value >= floor.min - TOLERANCE) and (
        floor.max is None or value <= floor.max + TOLERANCE
    )
    return GateCheck("floor", ok, f"{floor.metric} = {value:.4g} (needs {bounds})")


def check_no_regression(
    gate: NoRegression, challenger: Candidate, champion: Candidate, min_improvement: float
) -> tuple[GateCheck, bool]:
    """-> (the no-regression check, whether the metric improved by more than min_improvement)."""
    new, old = _value(challenger.metrics, gate.metric), _value(champion.metrics, gate.metric)
    if new is None:
        return GateCheck(
            "no_regression", False, f"{gate.metric}: missing from the evaluation"
        ), False
    if old is None:  # a gate added after the champion was registered: nothing to compare with
        detail = f"{gate.metric} = {new:.4g}; {champion.label} has no value: not compared"
        return GateCheck("no_regression", True, detail), False
    better = (new - old) if gate.higher_is_better else (old - new)
    direction = "higher" if gate.higher_is_better else "lower"
    detail = (
        f"{gate.metric} = {new:.4g} vs {champion.label} {old:.4g} "
        f"({direction} is better, margin {gate.margin:g})"
    )
    passed = better >= -gate.margin - TOLERANCE
    return GateCheck("no_regression", passed, detail), better > min_improvement + TOLERANCE


def compare(
    challenger: Candidate, champion: Candidate, config: PromotionConfig
) -> tuple[list[GateCheck], list[str]]:
    """The relative gates (rules 3 and 4 of the module docstring) -> (checks, notes)."""
    if not config.no_regression:
        return [], ["no no_regression gates configured: the floors decide"]
    if champion.eval_set != challenger.eval_set:
        detail = (
            f"{champion.label} was evaluated on {champion.eval_set.describe()}, the challenger "
            f"on {challenger.eval_set.describe()}: not comparable"
        )
        if config.on_eval_set_mismatch == "reject":
            return [GateCheck("eval_set", False, detail + " (on_eval_set_mismatch: reject)")], []
        return [], [detail + " (on_eval_set_mismatch: floors_only)"]
    checks, improved = [], []
    for gate in config.no_regression:
        check, better = check_no_regression(gate, challenger, champion, config.min_improvement)
        checks.append(check)
        improved.append(better)
    if config.require_improvement and not any(improved):
        detail = (
            f"no gated metric beats {champion.label} by more than {config.min_improvement:g} "
            "(a tie is not promoted; require_improvement: false promotes ties)"
        )
        checks.append(GateCheck("improvement", False, detail))
    same = challenger.weights_digest and challenger.weights_digest == champion.weights_digest
    return checks, [f"same weights as {champion.label}"] if same else []


def decide(challenger: Candidate, champion: Candidate | None, config: PromotionConfig) -> Decision:
    """Apply the gates of ``config`` to ``challenger`` against ``champion`` (None: no champion)."""
    champion_version = champion.version if champion is not None else None
    if not config.enabled:
        check = GateCheck("enabled", False, "promotion is disabled (register.promotion.enabled)")
        return Decision(False, champion_version, [check])
    checks = [check_floor(f, challenger.metrics) for f in config.floors]
    if champion is None:
        relative, notes = [], ["no champion yet: the floors decide"]
    else:
        relative, notes = compare(challenger, champion, config)
    checks += relative
    return Decision(all(c.passed for c in checks), champion_version, checks, notes)
