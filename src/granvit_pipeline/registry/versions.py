"""The registered encoder: versions, the ``challenger`` / ``champion`` aliases, promotion and
rollback, all through one ``MlflowClient`` (MLflow 3 aliases; never the deprecated stages).

Every change of champion is written down, so that a rollback knows where to go and anyone can
see who moved it and why:

- registered-model tag ``champion.history``: JSON list of the versions that were champion, in
  order, the current one last. A promotion appends; a rollback removes the last one.
- registered-model tag ``champion.events``: JSON list of every promotion and rollback
  (action, version, previous, at, by, reason, run_id), the newest last, capped.
- model-version tags ``promotion.*``: the gates' decision on that version (promoted or not,
  and why), and ``champion.promoted`` / ``champion.demoted`` / ``champion.restored``.

MLflow has no transactions: promotions and rollbacks of one model hold its promotion lock
(:mod:`granvit_pipeline.registry.lock`) from reading the champion to moving the alias, so two
``register`` runs finishing together take turns and the second compares with the first's result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from granvit_pipeline.registry.config import PromotionConfig
from granvit_pipeline.registry.encoder import log_encoder, log_model_metrics
from granvit_pipeline.registry.gates import Candidate, Decision, decide
from granvit_pipeline.registry.lineage import candidate_from_tags, report_tags, run_lineage
from granvit_pipeline.registry.lock import promotion_lock
from granvit_pipeline.registry.uri import global_tracking_uri

logger = logging.getLogger(__name__)

TAG_HISTORY = "champion.history"
TAG_EVENTS = "champion.events"
MAX_EVENTS = 200  # the oldest go first, and sooner if the JSON would pass MAX_MODEL_TAG
MAX_MODEL_TAG = 100_000  # mlflow.utils.validation.MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
TAG_DECISION = "promotion.decision"  # promoted | rejected
TAG_REASONS = "promotion.reasons"  # JSON list of strings
TAG_COMPARED_WITH = "promotion.compared_with"  # champion version at the time, or "none"
TAG_DECIDED_BY_RUN = "promotion.run_id"
TAG_DECIDED_AT = "promotion.at"


MAX_RUN_TAG = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH (the full record is an artifact)


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class ChampionChange:
    """One promotion or rollback."""

    action: str  # "promote" | "rollback"
    version: str  # the new champion
    previous: str | None  # the champion before
    at: str
    by: str
    reason: str
    run_id: str | None = None


class ModelRegistry:
    """One registered model (``name``) in the registry of ``tracking_uri``."""

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        champion_alias: str = "champion",
        challenger_alias: str = "challenger",
        registry_uri: str | None = None,  # None: MLFLOW_REGISTRY_URI, else the tracking URI
    ):
        from mlflow import MlflowClient  # `import mlflow` takes seconds: only when used

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        # MLflow's own resolution (argument, MLFLOW_REGISTRY_URI, tracking URI): where to lock
        self.registry_uri: str = self.client._registry_uri
        self.name = name
        self.champion_alias, self.challenger_alias = champion_alias, challenger_alias

    # ------------------------------------------------------------------------ registering
    def ensure_model(self) -> None:
        """Create the registered model unless it exists."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.client.create_registered_model(
                self.name,
                description="GranViT vision encoder (SiglipVisionModel, HF safetensors) as a "
                "pyfunc: predict(pixel_values) -> patch features; aliases champion/challenger.",
            )

    def register(
        self, model_id: str, run_id: str, tags: dict[str, str], description: str | None = None
    ) -> str:
        """A new version of logged model ``model_id``; it becomes the challenger. -> version."""
        self.ensure_model()
        with global_tracking_uri(self.client.tracking_uri):  # see registry.uri
            version = self.client.create_model_version(
                self.name, source=f"models:/{model_id}", run_id=run_id, tags=tags,
                description=description, model_id=model_id,
            ).version  # fmt: skip
        self.client.set_registered_model_alias(self.name, self.challenger_alias, version)
        logger.info("registered %s v%s (alias %s)", self.name, version, self.challenger_alias)
        return str(version)

    def register_encoder(
        self,
        run_id: str,
        export_dir: str,
        report: Mapping[str, Any],
        artifact_name: str = "encoder",
        extra_tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Log ``export_dir``'s encoder as a model of run ``run_id`` and register it with the
        evaluation ``report``'s metrics and the run's lineage as tags; it becomes the challenger.
        -> name, version, model_uri, model_id, run_id, alias."""
        tags = {**report_tags(report), **run_lineage(self.client, run_id), **(extra_tags or {})}
        model_id = log_encoder(self.client, run_id, export_dir, artifact_name, tags)
        log_model_metrics(self.client, run_id, model_id, report["metrics"])
        model = report.get("model") or {}
        description = (
            f"{model.get('stage')} export {export_dir}, evaluated on {report.get('images')} "
            f"{report.get('split')} images"
        )
        version = self.register(model_id, run_id, tags, description)
        return {
            "model_name": self.name,
            "version": version,
            "model_uri": f"models:/{self.name}/{version}",
            "model_id": model_id,
            "run_id": run_id,
            "alias": self.challenger_alias,
        }

    # ----------------------------------------------------------------------------- reading
    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as err:
            # no such model: RESOURCE_DOES_NOT_EXIST; no such alias: INVALID_PARAMETER_VALUE
            # (SQL store); alias names are validated in RegisterParams.
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def champion(self) -> str | None:
        return self.alias_version(self.champion_alias)

    def candidate(self, version: str) -> Candidate:
        tags = self.client.get_model_version(self.name, version).tags
        return candidate_from_tags(version, tags)

    def _model_tags(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise

    def history(self) -> list[str]:
        """Versions that were champion, oldest first; the last one is the current champion."""
        return [str(v) for v in _json_list(self._model_tags().get(TAG_HISTORY))]

    def events(self) -> list[dict[str, Any]]:
        return _json_list(self._model_tags().get(TAG_EVENTS))

    # -------------------------------------------------------------------- moving champion
    def _record(self, change: ChampionChange, history: list[str]) -> None:
        events = [*self.events(), asdict(change)][-MAX_EVENTS:]
        while len(json.dumps(events)) > MAX_MODEL_TAG and len(events) > 1:
            events.pop(0)
        self.client.set_registered_model_tag(self.name, TAG_HISTORY, json.dumps(history))
        self.client.set_registered_model_tag(self.name, TAG_EVENTS, json.dumps(events))

    def _set_champion(self, change: ChampionChange, history: list[str]) -> None:
        self.client.set_registered_model_alias(self.name, self.champion_alias, change.version)
        self._record(change, history)

    def promote(self, version: str, reason: str, by: str, run_id: str | None = None) -> None:
        """``champion`` -> ``version``, appended to the history."""
        with promotion_lock(self.registry_uri, self.name):
            self._promote(version, reason, by, run_id)

    def _promote(self, version: str, reason: str, by: str, run_id: str | None) -> None:
        previous = self.champion()
        change = ChampionChange("promote", version, previous, _now(), by, reason, run_id)
        history = self.history()
        if previous is not None and (not history or history[-1] != previous):
            history.append(previous)  # moved by hand (UI, API): keep it reachable by rollback
        self._set_champion(change, [*history, version])
        note = json.dumps({"at": change.at, "by": by, "previous": previous, "run_id": run_id})
        self.client.set_model_version_tag(self.name, version, "champion.promoted", note)
        logger.info("%s: champion v%s -> v%s", self.name, previous or "-", version)

    def rollback(self, reason: str, by: str, to_version: str | None = None) -> ChampionChange:
        """``champion`` back to the previous champion (or to ``to_version``, an earlier one)."""
        with promotion_lock(self.registry_uri, self.name):
            return self._rollback(reason, by, to_version)

    def _rollback(self, reason: str, by: str, to_version: str | None) -> ChampionChange:
        current = self.champion()
        history = self.history()
        if current is not None and (not history or history[-1] != current):
            history.append(current)  # moved by hand: roll back from where it actually is
        if len(history) < 2:
            raise ValueError(
                f"{self.name}: no previous champion to roll back to (history: {history or 'empty'})"
            )
        if to_version is not None and str(to_version) not in history[:-1]:
            raise ValueError(
                f"{self.name}: v{to_version} was never champion before v{history[-1]}; "
                f"earlier champions: {', '.join('v' + v for v in history[:-1])}"
            )
        target = str(to_version) if to_version is not None else history[-2]
        kept = history[:-1]
        while kept[-1] != target:
            kept.pop()
        change = ChampionChange("rollback", target, current, _now(), by, reason)
        self._set_champion(change, kept)
        if current is not None:
            demoted = {"at": change.at, "by": by, "reason": reason, "to": target}
            self.client.set_model_version_tag(
                self.name, current, "champion.demoted", json.dumps(demoted)
            )
        restored = {"at": change.at, "by": by, "reason": reason, "from": current}
        self.client.set_model_version_tag(
            self.name, target, "champion.restored", json.dumps(restored)
        )
        logger.warning("%s: champion rolled back v%s -> v%s by %s: %s", self.name, current,
                       target, by, reason)  # fmt: skip
        return change

    # ------------------------------------------------------------------------- promotion
    def record_decision(self, version: str, decision: Decision, run_id: str | None) -> None:
        tags = {
            TAG_DECISION: "promoted" if decision.promote else "rejected",
            TAG_REASONS: json.dumps(decision.reasons),
            TAG_COMPARED_WITH: decision.champion_version or "none",
            TAG_DECIDED_AT: _now(),
        }
        if run_id:
            tags[TAG_DECIDED_BY_RUN] = run_id
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def promote_if_better(
        self, version: str, config: PromotionConfig, by: str, run_id: str | None = None
    ) -> Decision:
        """Apply the gates to ``version`` vs the champion; move ``champion`` when they pass."""
        with promotion_lock(self.registry_uri, self.name):
            return self._promote_if_better(version, config, by, run_id)

    def _promote_if_better(
        self, version: str, config: PromotionConfig, by: str, run_id: str | None
    ) -> Decision:
        champion = self.champion()
        if champion == str(version):  # its own promotion tags stay as they were
            decision = Decision(False, champion, notes=[f"v{version} is already the champion"])
            logger.info("%s v%s is already the %s", self.name, version, self.champion_alias)
            return decision
        challenger = self.candidate(version)
        decision = decide(challenger, self.candidate(champion) if champion else None, config)
        self.record_decision(version, decision, run_id)
        if decision.promote:
            self._promote(version, decision.summary(), by, run_id)
            logger.info("%s v%s is the new %s: %s", self.name, version, self.champion_alias,
                        decision.summary())  # fmt: skip
        else:
            logger.warning("%s v%s NOT promoted (%s stays %s): %s", self.name, version,
                           self.champion_alias, f"v{champion}" if champion else "unset",
                           decision.summary())  # fmt: skip
        return decision

    def record_on_run(self, run_id: str, version: str, decision: Decision) -> dict[str, Any]:
        """The decision as tags of run ``run_id`` and its ``registry/promotion.json``. -> record."""
        record = {
            "model_name": self.name,
            "version": str(version),
            "decision": "promoted" if decision.promote else "rejected",
            "champion_before": decision.champion_version,
            "champion_after": self.champion(),
            "reasons": decision.reasons,
            "checks": [asdict(check) for check in decision.checks],
            "notes": decision.notes,
        }
        tags = {
            TAG_DECISION: record["decision"],
            "promotion.model": f"{self.name}/{version}",
            TAG_COMPARED_WITH: decision.champion_version or "none",
            "promotion.champion": record["champion_after"] or "none",
            TAG_REASONS: _fit(json.dumps(decision.reasons), MAX_RUN_TAG),
        }
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.log_dict(run_id, record, "registry/promotion.json")
        return record
