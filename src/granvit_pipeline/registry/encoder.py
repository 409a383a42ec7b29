"""Log an exported GranViT encoder as an MLflow model that needs no project code to load.

Why a pyfunc from code and not the ``transformers`` flavor: MLflow 3's transformers flavor saves
a bare ``SiglipVisionModel`` only as an ``image-feature-extraction`` pipeline, whose pyfunc
``predict`` it does not support ("not enabled for pyfunc predict functionality"), and the
pipeline's ``SiglipImageProcessor`` squashes images to a square where GranViT keeps the aspect
ratio and pads. So the model is ``registry/encoder_model.py`` (imports only mlflow, numpy,
torch, transformers, Pillow) plus the encoder's own Hugging Face folder as an artifact.

The logged model's folder::

    MLmodel  requirements.txt  python_env.yaml  conda.yaml  encoder_model.py
    artifacts/encoder/             config.json, model.safetensors (HF save_pretrained)
    artifacts/granvit/             projector.safetensors, granvit.json
    artifacts/preprocessing.json   image_size, mean, std
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.registry.uri import global_tracking_uri

logger = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("encoder_model.py")
ENCODER_DIR = "encoder"  # artifacts/<this>/ holds the HF folder
GRANVIT_DIR = "granvit"
PREPROCESSING_FILE = "preprocessing.json"
GRANVIT_FILES = ("projector.safetensors", "granvit.json")
# What the model code imports, pinned to the versions that wrote the model.
REQUIREMENTS = ("mlflow", "torch", "transformers", "safetensors", "numpy", "pillow")


def pip_requirements() -> list[str]:
    """``name==version`` for what ``encoder_model.py`` needs, from this environment.

    Local version labels are dropped (``2.14.1+cpu`` -> ``2.14.1``): they name a build of one
    index (CPU or CUDA wheels), and the public version is what pip resolves anywhere.
    """
    return [f"{name}=={importlib.metadata.version(name).split('+', 1)[0]}" for name in REQUIREMENTS]


def stage_artifacts(export_dir: str | Path, out: Path) -> dict[str, str]:
    """Copy the encoder's HF files, projector and preprocessing into ``out``: pyfunc artifacts.

    ``export_dir`` is a stage's ``export/`` (``model.export.export_encoder`` wrote the encoder
    at its top). Only safetensors weights are accepted.
    """
    from granvit_pipeline.model.data import SIGLIP_MEAN, SIGLIP_STD

    src = Path(export_dir)
    weights = sorted(src.glob("*.safetensors"))
    weights = [p for p in weights if p.name != "projector.safetensors"]
    if not (src / "config.json").is_file() or not weights:
        raise FileNotFoundError(
            f"{src} has no Hugging Face encoder in safetensors (config.json + model.safetensors,"
            " written by export_encoder)"
        )
    encoder = out / ENCODER_DIR
    encoder.mkdir(parents=True)
    for path in [src / "config.json", *weights, *src.glob("model.safetensors.index.json")]:
        shutil.copy2(path, encoder / path.name)
    granvit = out / GRANVIT_DIR
    granvit.mkdir()
    for name in GRANVIT_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, granvit / name)
    config = json.loads((src / "config.json").read_text())
    spec = {"image_size": config["image_size"], "mean": SIGLIP_MEAN, "std": SIGLIP_STD}
    (out / PREPROCESSING_FILE).write_text(json.dumps(spec, indent=2))
    return {
        ENCODER_DIR: str(encoder),
        GRANVIT_DIR: str(granvit),
        "preprocessing": str(out / PREPROCESSING_FILE),
    }


def signature(encoder_config: Mapping[str, Any]) -> Any:
    """pixel_values float32 ``(B, 3, S, S)`` -> patch features float32 ``(B, N, C)``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    size, patch = int(encoder_config["image_size"]), int(encoder_config["patch_size"])
    tokens, width = (size // patch) ** 2, int(encoder_config["hidden_size"])
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, tokens, width))]),
    )


def log_encoder(
    client: Any,  # mlflow.MlflowClient
    run_id: str,
    export_dir: str | Path,
    name: str,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log the encoder of ``export_dir`` as a model of run ``run_id``; returns its model id.

    The LoggedModel is created in the run's experiment first, then ``Model.log`` fills it (it
    would otherwise pick the process's active experiment).
    """
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = stage_artifacts(export_dir, Path(tmp))  # checks the export first
        encoder_config = json.loads((Path(artifacts[ENCODER_DIR]) / "config.json").read_text())
        run = client.get_run(run_id)
        logged = client.create_logged_model(
            experiment_id=run.info.experiment_id, name=name, source_run_id=run_id,
            tags=dict(tags or {}), model_type="granvit-encoder",
        )  # fmt: skip
        with global_tracking_uri(client.tracking_uri), warnings.catch_warnings():
            # An input example would be a whole image batch in JSON (3 MB at 512 px): the
            # tensor signature documents and checks the input instead.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            Model.log(
                artifact_path=None,
                name=name,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged.model_id,
                python_model=str(MODEL_CODE),
                artifacts=artifacts,
                pip_requirements=pip_requirements(),
                signature=signature(encoder_config),
            )
    logger.info("logged encoder %s as model %s of run %s", export_dir, logged.model_id, run_id)
    return logged.model_id


def log_model_metrics(
    client: Any, run_id: str, model_id: str, metrics: Mapping[str, float]
) -> dict[str, float]:
    """The evaluation metrics on run ``run_id``, linked to logged model ``model_id`` (MLflow 3
    shows them on the model's page). Names are made MLflow-safe (``acc@0.5`` -> ``acc_0.5``);
    the exact report keys stay in the version's ``eval.metrics`` tag. -> what was logged."""
    from mlflow.entities import Metric

    from granvit_pipeline.tracking import metric_values

    values = metric_values({"metrics": dict(metrics)}, "metrics")
    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, 0, model_id=model_id) for key, value in values.items()]
    if batch:
        client.log_batch(run_id, metrics=batch)
    return values
