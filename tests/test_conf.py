"""Every YAML and JSON file in conf/ loads, and the parameters validate against their models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"


@pytest.mark.parametrize(
    "path", sorted(CONF.rglob("*.yml")), ids=lambda p: str(p.relative_to(CONF))
)
def test_yaml_parses(path: Path) -> None:
    assert yaml.safe_load(path.read_text()) is not None, f"{path} is empty"


@pytest.mark.parametrize(
    "path", sorted(CONF.rglob("*.json")), ids=lambda p: str(p.relative_to(CONF))
)
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def _loader() -> OmegaConfigLoader:
    return OmegaConfigLoader(str(CONF), base_env="base", default_run_env="local")


def test_catalog_resolves_and_names_known_types() -> None:
    catalog = _loader()["catalog"]
    assert {"raw_regions", "regions", "shards", "validation_report_json"} <= set(catalog)
    for name, entry in catalog.items():
        assert "type" in entry, f"catalog entry {name} has no type"
        assert "${" not in json.dumps(entry), f"catalog entry {name} has an unresolved reference"


def _validate_pretrain(params: dict) -> None:
    from granvit_pipeline.training.granvit.params import PretrainParams

    PretrainParams.model_validate(params["pretrain"])


def _validate_adapt(params: dict) -> None:
    from granvit_pipeline.training.granvit.params import AdaptParams, CommonParams

    AdaptParams.model_validate(params["adapt"]).checked(
        CommonParams(**params["pretrain"]["common"])
    )


def _validate_ingest(params: dict) -> None:
    from granvit_pipeline.regions.readers import IngestParams

    IngestParams.model_validate(params["ingest"])


def _validate_validate(params: dict) -> None:
    from granvit_pipeline.regions.readers import IngestParams
    from granvit_pipeline.regions.validation import ValidateParams

    ValidateParams.model_validate(params["validate"]).config_for(IngestParams(**params["ingest"]))


def _validate_shard(params: dict) -> None:
    from granvit_pipeline.regions.shards import ShardConfig

    ShardConfig.model_validate(params["shard"])


def _validate_evaluate(params: dict) -> None:
    from granvit_pipeline.evaluation.config import EvaluateParams

    EvaluateParams.model_validate(params["evaluate"])


def _validate_register(params: dict) -> None:
    from granvit_pipeline.registry import RegisterParams

    RegisterParams.model_validate(params["register"])


def _validate_tune(params: dict) -> None:
    from granvit_pipeline.tuning.config import TuneConfig

    TuneConfig.model_validate(params["tune"])


# conf/base/parameters_<pipeline>.yml -> the check its nodes make (the model they validate).
PARAMETER_MODELS = {
    "pretrain": _validate_pretrain,
    "adapt": _validate_adapt,
    "ingest": _validate_ingest,
    "validate": _validate_validate,
    "shard": _validate_shard,
    "evaluate": _validate_evaluate,
    "register": _validate_register,
    "tune": _validate_tune,
}


def test_every_parameters_file_has_a_model() -> None:
    files = {p.stem.removeprefix("parameters_") for p in (CONF / "base").glob("parameters_*.yml")}
    assert files == set(PARAMETER_MODELS)


@pytest.mark.parametrize("name", sorted(PARAMETER_MODELS))
def test_parameters_file_validates_against_its_model(name: str) -> None:
    params = _loader()["parameters"]
    assert name in params, f"parameters_{name}.yml defines no top-level {name!r}"
    PARAMETER_MODELS[name](params)


def test_parameters_validate_against_their_models() -> None:
    from granvit_pipeline.regions.readers import IngestParams

    params = _loader()["parameters"]
    ingest = IngestParams(**params["ingest"])
    assert ingest.resolved_sources()[0].format == "demo"
    assert ingest.demo_dir == Path("data/01_raw/demo")


def test_unknown_parameter_key_is_an_error() -> None:
    from pydantic import ValidationError

    from granvit_pipeline.regions.readers import IngestParams

    params = _loader()["parameters"]["ingest"]
    with pytest.raises(ValidationError, match="formt"):
        IngestParams(**{**params, "formt": "coco"})
