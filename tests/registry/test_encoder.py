"""The exported encoder logged as an MLflow model, registered, promoted, and loaded back as
``models:/<name>@champion`` in a fresh interpreter where project code cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from granvit_pipeline.model.data import preprocess_image
from granvit_pipeline.registry import ModelRegistry, log_encoder, pip_requirements, report_tags
from granvit_pipeline.registry.encoder import log_model_metrics, stage_artifacts
from granvit_pipeline.registry.uri import global_tracking_uri

METRICS = {"caption2bbox/acc@0.5": 0.25, "bbox2caption/rouge_l": 0.5}

# Runs with `python -I` from a temporary folder: no PYTHONPATH, no cwd on sys.path, and any
# import of granvit_pipeline (the editable install would allow it) fails loudly.
LOADER = r"""
import json, sys

class NoProjectCode:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "granvit_pipeline":
            raise ImportError(f"the model imported project code: {name}")

sys.meta_path.insert(0, NoProjectCode())
import mlflow, numpy as np, torch
from PIL import Image
from transformers import AutoModel

uri = sys.argv[1]
model = mlflow.pyfunc.load_model(uri)
pixels = np.load("pixels.npy")
np.save("features.npy", model.predict(pixels))
python_model = model.unwrap_python_model()
np.save("preprocessed.npy", python_model.preprocess([Image.open("image.png")]))
hf_dir = mlflow.artifacts.download_artifacts(uri) + "/artifacts/encoder"
hf = AutoModel.from_pretrained(hf_dir)
with torch.inference_mode():
    np.save("hf_features.npy", hf(pixel_values=torch.from_numpy(pixels)).last_hidden_state)
classes = {"hf_class": type(hf).__name__, "encoder_class": type(python_model.encoder).__name__}
print(json.dumps(classes))
"""


def test_stage_artifacts_needs_a_safetensors_encoder(tmp_path: Path, tiny_export: Path) -> None:
    empty = tmp_path / "export"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        stage_artifacts(empty, tmp_path / "out")
    staged = stage_artifacts(tiny_export, tmp_path / "ok")
    assert sorted(p.name for p in Path(staged["encoder"]).iterdir()) == [
        "config.json", "model.safetensors"]  # fmt: skip
    assert json.loads(Path(staged["preprocessing"]).read_text())["image_size"] == 32


def test_the_global_tracking_uri_is_only_borrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    for before in (None, "sqlite:////tmp/other.db"):
        if before:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
        with global_tracking_uri("sqlite:////tmp/store.db"):
            assert mlflow.get_tracking_uri() == "sqlite:////tmp/store.db"
        assert os.environ.get("MLFLOW_TRACKING_URI") == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/later.db")
    assert mlflow.get_tracking_uri() == "sqlite:////tmp/later.db"  # no global left behind


def test_pip_requirements_pin_the_installed_versions() -> None:
    import transformers

    pins = dict(line.split("==") for line in pip_requirements())
    assert set(pins) == {"mlflow", "torch", "transformers", "safetensors", "numpy", "pillow"}
    assert pins["transformers"] == transformers.__version__
    assert pins["torch"] == torch.__version__.split("+")[0]


@pytest.mark.slow
def test_champion_loads_without_project_code(
    store: str, model_name: str, new_run, tiny_export: Path, tmp_path: Path
) -> None:
    import mlflow

    registry, run_id = ModelRegistry(store, model_name), new_run()
    tags = report_tags({"metrics": METRICS, "data_version": "d1", "split": "val", "images": 4})
    model_id = log_encoder(registry.client, run_id, tiny_export, "encoder", tags)
    logged_metrics = log_model_metrics(registry.client, run_id, model_id, METRICS)
    version = registry.register(model_id, run_id, tags)
    assert registry.alias_version("challenger") == version and registry.champion() is None
    registry.promote(version, "first", by="test")
    assert "MLFLOW_TRACKING_URI" not in os.environ  # logging left the process as it was

    mv = registry.client.get_model_version(model_name, version)
    assert mv.run_id == run_id and mv.source == f"models:/{model_id}"
    assert tags.items() <= mv.tags.items()
    logged = registry.client.get_logged_model(model_id)
    assert logged.source_run_id == run_id and logged.status.to_proto() == 2  # READY
    assert {m.key: m.value for m in logged.metrics} == logged_metrics == {
        "caption2bbox/acc_0.5": 0.25, "bbox2caption/rouge_l": 0.5}  # fmt: skip
    uri = f"models:/{model_name}@champion"
    with global_tracking_uri(store):
        requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    assert requirements == pip_requirements()

    # Inputs and the project's own answers, to compare with what the fresh interpreter gets.
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    from transformers import SiglipVisionModel

    with torch.inference_mode():
        expected = SiglipVisionModel.from_pretrained(tiny_export)(pixel_values=pixels)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 50, 3), np.uint8))
    image.save(tmp_path / "image.png")
    (tmp_path / "load.py").write_text(LOADER)

    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-I", "load.py", uri], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    classes = json.loads(out.stdout.strip().splitlines()[-1])
    assert classes == {"hf_class": "SiglipVisionModel", "encoder_class": "SiglipVisionModel"}
    features = np.load(tmp_path / "features.npy")
    assert features.shape == (2, 16, 32)  # (32 / 8)**2 patches, hidden 32
    np.testing.assert_allclose(features, expected.last_hidden_state.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "hf_features.npy"), features, atol=1e-6)
    reference, _ = preprocess_image(image, 32)
    np.testing.assert_allclose(np.load(tmp_path / "preprocessed.npy")[0], reference, atol=1e-6)
