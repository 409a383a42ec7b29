"""Promotion gates as configured: floors, no-regression margins, ties, evaluation-set mismatch,
and the settings' validation (conf/base/parameters_register.yml included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from granvit_pipeline.registry import Candidate, EvalSet, PromotionConfig, RegisterParams, decide

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"
EVAL = EvalSet("data-a", "val", 30)
ACC, IOU, BAD = "caption2bbox/acc@0.5", "caption2bbox/mean_iou", "caption2bbox/unparseable_rate"


def candidate(version: str | None = None, eval_set: EvalSet = EVAL, **metrics: float) -> Candidate:
    names = {"acc": ACC, "iou": IOU, "bad": BAD}
    values = {names[k]: v for k, v in metrics.items()}
    return Candidate(version, values, eval_set, f"weights-{version}")


def config(**overrides: object) -> PromotionConfig:
    base = {
        "floors": [{"metric": ACC, "min": 0.2}, {"metric": BAD, "max": 0.1}],
        "no_regression": [
            {"metric": ACC, "margin": 0.0},
            {"metric": IOU, "margin": 0.05},
            {"metric": BAD, "margin": 0.0, "higher_is_better": False},
        ],
    }
    return PromotionConfig.model_validate({**base, **overrides})


def test_first_version_is_promoted_when_the_floors_pass() -> None:
    decision = decide(candidate(acc=0.3, iou=0.5, bad=0.0), None, config())
    assert decision.promote and decision.champion_version is None
    assert [c.gate for c in decision.checks] == ["floor", "floor"]
    assert any("no champion yet" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"acc": 0.1, "iou": 0.5, "bad": 0.0}, f"{ACC} = 0.1 (needs >= 0.2)"),
        ({"acc": 0.3, "iou": 0.5, "bad": 0.5}, f"{BAD} = 0.5 (needs <= 0.1)"),
        ({"iou": 0.5, "bad": 0.0}, f"{ACC} >= 0.2: missing from the evaluation"),
        ({"acc": float("nan"), "iou": 0.5, "bad": 0.0}, "missing from the evaluation"),
    ],
)
def test_a_failed_floor_blocks_promotion(metrics: dict[str, float], expected: str) -> None:
    decision = decide(candidate(**metrics), None, config())
    assert not decision.promote
    assert [c.gate for c in decision.failed] == ["floor"]
    assert expected in decision.summary() and decision.summary().startswith("not promoted")


def test_better_challenger_is_promoted_and_every_check_is_a_reason() -> None:
    champion = candidate("1", acc=0.30, iou=0.50, bad=0.05)
    challenger = candidate(acc=0.35, iou=0.47, bad=0.05)  # iou within its 0.05 margin
    decision = decide(challenger, champion, config())
    assert decision.promote and decision.champion_version == "1"
    assert len(decision.reasons) == 5 and all(r.startswith("PASS") for r in decision.reasons)


@pytest.mark.parametrize(
    ("metrics", "failing"),
    [
        ({"acc": 0.29, "iou": 0.60, "bad": 0.0}, ACC),  # worse acc, no margin
        ({"acc": 0.40, "iou": 0.44, "bad": 0.0}, IOU),  # iou beyond its 0.05 margin
        ({"acc": 0.40, "iou": 0.60, "bad": 0.06}, BAD),  # lower is better: worse
    ],
)
def test_a_regression_beyond_its_margin_blocks_promotion(
    metrics: dict[str, float], failing: str
) -> None:
    champion = candidate("1", acc=0.30, iou=0.50, bad=0.05)
    decision = decide(candidate(**metrics), champion, config())
    assert not decision.promote
    assert [c.detail.split(" ")[0] for c in decision.failed] == [failing]


def test_a_tie_is_not_promoted_unless_configured() -> None:
    champion = candidate("1", acc=0.30, iou=0.50, bad=0.05)
    same = candidate(acc=0.30, iou=0.50, bad=0.05)
    same = Candidate(None, same.metrics, EVAL, champion.weights_digest)
    rejected = decide(same, champion, config())
    assert not rejected.promote
    assert [c.gate for c in rejected.failed] == ["improvement"]
    assert "NOTE same weights as v1" in rejected.reasons
    assert decide(same, champion, config(require_improvement=False)).promote


def test_min_improvement_is_a_threshold() -> None:
    champion = candidate("1", acc=0.30, iou=0.50, bad=0.05)
    slightly = candidate(acc=0.305, iou=0.50, bad=0.05)
    assert decide(slightly, champion, config()).promote
    assert not decide(slightly, champion, config(min_improvement=0.01)).promote


@pytest.mark.parametrize(
    ("other", "shown"),
    [
        (EvalSet("data-b", "val", 30), "data data-b"),
        (EvalSet("data-a", "test", 30), "split test"),
        (EvalSet("data-a", "val", 10), "10 images"),
        (EvalSet("data-a", "val", 30, "0123456789abcdef"), "evaluate params 0123456789ab"),
    ],
)
def test_another_evaluation_set_follows_the_policy(other: EvalSet, shown: str) -> None:
    champion = candidate("1", eval_set=other, acc=0.9, iou=0.9, bad=0.0)
    worse = candidate(acc=0.3, iou=0.5, bad=0.0)
    rejected = decide(worse, champion, config())
    assert not rejected.promote and [c.gate for c in rejected.failed] == ["eval_set"]
    assert shown in rejected.summary() and "not comparable" in rejected.summary()
    floors_only = decide(worse, champion, config(on_eval_set_mismatch="floors_only"))
    assert floors_only.promote  # the champion's higher numbers were not compared
    assert any("not comparable" in r for r in floors_only.reasons)


def test_a_metric_the_champion_lacks_is_not_compared() -> None:
    champion = Candidate("1", {ACC: 0.3, BAD: 0.0}, EVAL)
    decision = decide(candidate(acc=0.4, iou=0.1, bad=0.0), champion, config())
    assert decision.promote
    assert any("v1 has no value: not compared" in r for r in decision.reasons)


def test_without_relative_gates_the_floors_decide() -> None:
    champion = candidate("1", acc=0.9, iou=0.9, bad=0.0)
    decision = decide(candidate(acc=0.3, iou=0.5, bad=0.0), champion, config(no_regression=[]))
    assert decision.promote and any("the floors decide" in r for r in decision.reasons)
    assert RegisterParams().promotion.floors == []  # the defaults are valid


def test_disabled_promotion_never_promotes() -> None:
    decision = decide(candidate(acc=0.9, iou=0.9, bad=0.0), None, config(enabled=False))
    assert not decision.promote and "disabled" in decision.summary()


def test_settings_validate_and_typos_fail() -> None:
    params = yaml.safe_load((CONF / "parameters_register.yml").read_text())["register"]
    cfg = RegisterParams.model_validate(params)
    assert cfg.model_name == "granvit-encoder" and cfg.promotion.require_improvement
    assert (cfg.champion_alias, cfg.challenger_alias) == ("champion", "challenger")
    with pytest.raises(ValidationError, match="floorz"):
        RegisterParams.model_validate({**params, "promotion": {"floorz": []}})
    with pytest.raises(ValidationError, match="needs `min` or `max`"):
        PromotionConfig.model_validate({"floors": [{"metric": ACC}], "require_improvement": False})
    with pytest.raises(ValidationError, match="must differ"):
        RegisterParams.model_validate({"champion_alias": "x", "challenger_alias": "x"})
    with pytest.raises(ValidationError, match="champion_alias"):
        RegisterParams.model_validate({"champion_alias": "v@1"})
