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


def test_parameters_validate_against_their_models() -> None:
    from granvit_pipeline.pipelines.ingest.nodes import IngestParams

    params = _loader()["parameters"]
    ingest = IngestParams(**params["ingest"])
    assert ingest.resolved_sources()[0].format == "demo"
    assert ingest.demo_dir == Path("data/01_raw/demo")


def test_unknown_parameter_key_is_an_error() -> None:
    from pydantic import ValidationError

    from granvit_pipeline.pipelines.ingest.nodes import IngestParams

    params = _loader()["parameters"]["ingest"]
    with pytest.raises(ValidationError, match="formt"):
        IngestParams(**{**params, "formt": "coco"})
