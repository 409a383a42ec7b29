"""The GranViT vision encoder as an MLflow pyfunc model ("models from code").

MLflow copies this file into the logged model and executes it when the model is loaded, so it
imports nothing from ``granvit_pipeline``: only mlflow, numpy, torch, transformers and Pillow,
pinned in the model's ``requirements.txt``. Never import it from project code (it calls
``mlflow.models.set_model`` at import time, as models-from-code files must).

Artifacts of the logged model (``<model>/artifacts/``):

- ``encoder/``: the ``SiglipVisionModel`` in Hugging Face format (``config.json`` +
  ``model.safetensors``), loadable with ``transformers.AutoModel.from_pretrained``;
- ``granvit/``: ``projector.safetensors`` (encoder -> LLM MLP) and ``granvit.json`` (config);
- ``preprocessing.json``: encoder input side, mean and std.

``predict(pixel_values)``: float32 ``(B, 3, S, S)`` normalised encoder input -> float32 patch
features ``(B, N, C)``, ``N = (S / patch)**2`` in row-major order (the last hidden state, as the
projector sees it). ``load_model(uri).unwrap_python_model()`` also gives ``.encoder`` (the torch
module) and ``.preprocess(images)`` (PIL RGB images -> pixel values: longer side resized to S
with bicubic, normalised, centred on a zero canvas, as in training). ``model_config={"device":
"cuda"}`` at load time puts the encoder on a GPU (default CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel
from PIL import Image
from transformers import AutoModel


class GranViTEncoder(PythonModel):
    """Patch features of a GranViT-trained SigLIP vision encoder."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        self.device = torch.device(config.get("device", "cpu"))
        self.encoder_dir = Path(context.artifacts["encoder"])
        self.encoder = AutoModel.from_pretrained(self.encoder_dir).to(self.device).eval()
        spec = json.loads(Path(context.artifacts["preprocessing"]).read_text())
        self.image_size = int(spec["image_size"])
        self.mean = np.asarray(spec["mean"], dtype=np.float32)
        self.std = np.asarray(spec["std"], dtype=np.float32)

    def preprocess(self, images: list[Image.Image]) -> np.ndarray:
        """RGB images -> ``(B, 3, S, S)`` float32: aspect-preserving resize + centred pad."""
        size, batch = self.image_size, []
        for image in images:
            if image.mode != "RGB":
                raise ValueError(f"expected RGB images, got mode {image.mode!r}")
            w, h = image.size
            scale = size / max(w, h)
            new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
            resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
            pixels = (np.asarray(resized, dtype=np.float32) / 255.0 - self.mean) / self.std
            canvas = np.zeros((size, size, 3), dtype=np.float32)
            pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
            canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = pixels
            batch.append(canvas.transpose(2, 0, 1))
        return np.stack(batch)

    # No type hints on predict: MLflow would read them as a (list-based) input schema; the
    # tensor signature is given when the model is logged. (MLflow warns "Add type hints to
    # the `predict` method" about it, through a filter of its own that cannot be silenced.)
    def predict(self, context, model_input, params=None):
        pixels = torch.as_tensor(np.asarray(model_input, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            features = self.encoder(pixel_values=pixels).last_hidden_state
        return features.float().cpu().numpy()


mlflow.models.set_model(GranViTEncoder())
