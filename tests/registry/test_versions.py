"""Promotion and rollback move the aliases in a real SQLite registry, and record why, who and
the champion history (versions here point at no real model: only their tags matter)."""

from __future__ import annotations

import json
import logging

import pytest

from granvit_pipeline.registry import ModelRegistry, PromotionConfig, report_tags

ACC, IOU = "caption2bbox/acc@0.5", "caption2bbox/mean_iou"
GATES = PromotionConfig(
    floors=[{"metric": ACC, "min": 0.1}],
    no_regression=[{"metric": ACC, "margin": 0.0}, {"metric": IOU, "margin": 0.02}],
)


def add_version(registry: ModelRegistry, run_id: str, acc: float, iou: float = 0.5) -> str:
    """A version tagged as register_encoder tags it, made the challenger."""
    report = {"metrics": {ACC: acc, IOU: iou}, "data_version": "d1", "split": "val",
              "images": 30, "model": {"weights_digest": f"w-{acc}-{iou}"}}  # fmt: skip
    registry.ensure_model()
    version = registry.client.create_model_version(
        registry.name, source="file:///nowhere", run_id=run_id, tags=report_tags(report)
    ).version
    registry.client.set_registered_model_alias(registry.name, registry.challenger_alias, version)
    return str(version)


def test_no_model_or_alias_reads_as_none(store: str, model_name: str) -> None:
    registry = ModelRegistry(store, model_name)
    assert registry.champion() is None and registry.history() == []
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback("nothing registered", by="eve")
    registry.ensure_model()
    registry.ensure_model()  # idempotent
    assert registry.champion() is None and registry.history() == [] and registry.events() == []


def test_gates_move_the_champion_or_say_why_not(
    store: str, model_name: str, new_run, caplog: pytest.LogCaptureFixture
) -> None:
    registry, run_id = ModelRegistry(store, model_name), new_run()
    tags = lambda v: registry.client.get_model_version(model_name, v).tags  # noqa: E731

    v1 = add_version(registry, run_id, acc=0.3)
    first = registry.promote_if_better(v1, GATES, by="alice", run_id=run_id)
    assert first.promote and registry.champion() == v1 and registry.history() == [v1]
    assert tags(v1)["promotion.decision"] == "promoted"
    assert tags(v1)["promotion.compared_with"] == "none"
    assert json.loads(tags(v1)["champion.promoted"])["by"] == "alice"

    v2 = add_version(registry, run_id, acc=0.3)  # identical numbers: a tie
    with caplog.at_level(logging.WARNING):
        tie = registry.promote_if_better(v2, GATES, by="alice", run_id=run_id)
    assert not tie.promote and registry.champion() == v1
    assert registry.alias_version("challenger") == v2
    assert f"{model_name} v{v2} NOT promoted (champion stays v{v1})" in caplog.text
    assert tags(v2)["promotion.decision"] == "rejected"
    assert tags(v2)["promotion.compared_with"] == v1
    assert tags(v2)["promotion.run_id"] == run_id
    assert any("FAIL improvement" in r for r in json.loads(tags(v2)["promotion.reasons"]))

    v3 = add_version(registry, run_id, acc=0.2, iou=0.9)  # better iou, worse acc
    assert not registry.promote_if_better(v3, GATES, by="alice").promote
    v4 = add_version(registry, run_id, acc=0.4, iou=0.49)  # iou within its margin
    assert registry.promote_if_better(v4, GATES, by="bob").promote
    assert registry.champion() == v4 and registry.history() == [v1, v4]
    assert [(e["action"], e["version"], e["previous"]) for e in registry.events()] == [
        ("promote", v1, None), ("promote", v4, v1)]  # fmt: skip

    again = registry.promote_if_better(v4, GATES, by="bob")
    assert not again.promote and any("already the champion" in r for r in again.reasons)
    assert tags(v4)["promotion.decision"] == "promoted"  # untouched


def test_decision_is_recorded_on_the_run(store: str, model_name: str, new_run) -> None:
    registry, run_id = ModelRegistry(store, model_name), new_run("promote_encoder")
    v1 = add_version(registry, run_id, acc=0.05)  # below the floor
    decision = registry.promote_if_better(v1, GATES, by="alice", run_id=run_id)
    record = registry.record_on_run(run_id, v1, decision)
    assert record["decision"] == "rejected" and record["champion_after"] is None
    assert record["checks"] == [
        {"gate": "floor", "passed": False, "detail": f"{ACC} = 0.05 (needs >= 0.1)"}]  # fmt: skip
    run = registry.client.get_run(run_id)
    assert run.data.tags["promotion.decision"] == "rejected"
    assert run.data.tags["promotion.model"] == f"{model_name}/{v1}"
    assert run.data.tags["promotion.champion"] == "none"
    assert [f.path for f in registry.client.list_artifacts(run_id, "registry")] == [
        "registry/promotion.json"]  # fmt: skip


def test_rollback_walks_back_the_history_and_records_who_and_why(
    store: str, model_name: str, new_run
) -> None:
    registry, run_id = ModelRegistry(store, model_name), new_run()
    v1, v2, v3 = (add_version(registry, run_id, acc=a) for a in (0.2, 0.3, 0.4))
    for version in (v1, v2, v3):
        registry.promote(version, "gates passed", by="ci", run_id=run_id)
    assert registry.history() == [v1, v2, v3]

    change = registry.rollback("v3 fails on real images", by="carol")
    assert (change.action, change.version, change.previous) == ("rollback", v2, v3)
    assert registry.champion() == v2 and registry.history() == [v1, v2]
    demoted = json.loads(registry.client.get_model_version(model_name, v3).tags["champion.demoted"])
    assert demoted["by"] == "carol" and demoted["reason"] == "v3 fails on real images"
    assert demoted["to"] == v2
    restored = registry.client.get_model_version(model_name, v2).tags["champion.restored"]
    assert json.loads(restored)["from"] == v3
    last = registry.events()[-1]
    assert (last["action"], last["by"], last["reason"]) == ("rollback", "carol", change.reason)

    registry.rollback("again", by="carol")  # a second rollback goes further back
    assert registry.champion() == v1 and registry.history() == [v1]
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback("nothing left", by="carol")
    assert registry.champion() == v1


def test_rollback_to_an_earlier_version_and_after_a_manual_move(
    store: str, model_name: str, new_run
) -> None:
    registry, run_id = ModelRegistry(store, model_name), new_run()
    v1, v2, v3, v4 = (add_version(registry, run_id, acc=a) for a in (0.2, 0.3, 0.4, 0.5))
    for version in (v1, v2, v3):
        registry.promote(version, "gates passed", by="ci")
    with pytest.raises(ValueError, match=f"v{v4} was never champion"):
        registry.rollback("no", by="dan", to_version=v4)

    # someone moves the alias by hand (UI, API): rollback goes back to the last recorded one
    registry.client.set_registered_model_alias(model_name, "champion", v4)
    assert registry.rollback("hand-set v4 is bad", by="dan").version == v3
    assert registry.history() == [v1, v2, v3]

    assert registry.rollback("back to the start", by="dan", to_version=v1).version == v1
    assert registry.champion() == v1 and registry.history() == [v1]
