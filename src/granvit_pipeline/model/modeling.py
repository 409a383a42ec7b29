"""GranViT: SigLIP-style ViT -> 2-layer MLP projector -> Qwen2-style causal LLM.

All patch tokens of the encoder are prepended to the text embeddings (DESIGN.md section 2).
Sequence layout: ``[image tokens (N)] [text tokens (T)]``; text may be right-padded (training)
or left-padded (generation); position ids are computed from the attention mask, so both give the
same numbers for the real tokens.

Labels follow the Hugging Face convention: ``labels`` is aligned with ``input_ids`` and holds
``-100`` everywhere except answer tokens; the model shifts internally (the hidden state at text
position ``t`` predicts token ``t + 1``). The LM head runs only on the positions that carry a
label (or on all text positions when logits are asked for), never on image positions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from granvit_pipeline.model.config import GranViTConfig
from granvit_pipeline.model.stages import stage_spec

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class GranViTOutput:
    """Output of :meth:`GranViT.forward`.

    Attributes:
        loss: ``()`` float32, mean next-token cross-entropy over answer tokens (labels != -100)
            of the whole batch; ``None`` when no labels were given.
        num_answer_tokens: ``()`` int64, how many tokens the loss averages over.
        logits: ``(B, T, V)`` over text positions only (``logits[:, t]`` predicts
            ``input_ids[:, t + 1]``); ``None`` unless ``return_logits=True``.
        image_features: ``(B, N, C_vision)`` encoder patch features of ``feature_layer``
            (row-major ``h x w`` grid); ``None`` unless ``return_features=True``.
    """

    loss: Tensor | None
    num_answer_tokens: Tensor
    logits: Tensor | None = None
    image_features: Tensor | None = None


def _siglip_config(cfg: GranViTConfig) -> SiglipVisionConfig:
    v = cfg.vision
    return SiglipVisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        image_size=v.image_size,
        patch_size=v.patch_size,
        vision_use_head=v.use_head,
        layer_norm_eps=v.layer_norm_eps,
    )


def _qwen2_config(cfg: GranViTConfig) -> Qwen2Config:
    m = cfg.llm
    return Qwen2Config(
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        num_key_value_heads=m.num_kv_heads,
        max_position_embeddings=m.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": m.rope_theta},
        tie_word_embeddings=m.tie_word_embeddings,
        rms_norm_eps=m.rms_norm_eps,
        use_cache=False,
    )


def _load_local(cls: type, path: Path, what: str, attn: str) -> nn.Module:
    """``cls.from_pretrained`` of a local directory only (never the hub), in fp32.

    Why fp32: transformers loads in the checkpoint's dtype, so a bf16 export (any GPU run) or a
    bf16 release would come back bf16 beside the fp32 projector, and the forward fails on the
    mixed dtypes; the EMA teacher copied from it would lose its fp32 precision. The model is
    always built in fp32; the training engine (DeepSpeed bf16) or the caller casts it.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{what} weights dir {path} has no config.json: expected a local Hugging Face "
            "directory written by save_pretrained (config.json + *.safetensors)"
        )
    logger.info("loading %s weights from %s", what, path)
    return cls.from_pretrained(
        path, local_files_only=True, attn_implementation=attn, dtype=torch.float32
    )


def _check_loaded(what: str, path: Path, pairs: dict[str, tuple[object, object]]) -> None:
    bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if bad:
        detail = ", ".join(f"{k}: config {a} vs weights {b}" for k, (a, b) in bad.items())
        raise ValueError(f"{what} weights in {path} do not match the config ({detail})")


class GranViT(nn.Module):
    """Vision encoder + projector + causal LLM (see module docstring for the conventions)."""

    def __init__(self, config: GranViTConfig) -> None:
        super().__init__()
        self.config = config
        self.vision = self._build_vision(config)
        self.projector = nn.Sequential(
            nn.Linear(config.vision.hidden_size, config.llm.hidden_size),
            nn.GELU(),
            nn.Linear(config.llm.hidden_size, config.llm.hidden_size),
        )
        self.llm = self._build_llm(config)
        if config.gradient_checkpointing:
            kwargs = {"use_reentrant": False}  # non-reentrant: grads reach inputs of frozen parts
            self.vision.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            self.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)

    @staticmethod
    def _build_vision(cfg: GranViTConfig) -> SiglipVisionModel:
        if cfg.vision_weights_dir is None:
            hf = _siglip_config(cfg)
            hf._attn_implementation = cfg.attn_implementation
            return SiglipVisionModel(hf)
        model = _load_local(
            SiglipVisionModel, cfg.vision_weights_dir, "vision", cfg.attn_implementation
        )
        c = model.config
        _check_loaded("vision", cfg.vision_weights_dir, {
            "hidden_size": (cfg.vision.hidden_size, c.hidden_size),
            "image_size": (cfg.vision.image_size, c.image_size),
            "patch_size": (cfg.vision.patch_size, c.patch_size),
        })  # fmt: skip
        return model

    @staticmethod
    def _build_llm(cfg: GranViTConfig) -> Qwen2ForCausalLM:
        if cfg.llm_weights_dir is None:
            hf = _qwen2_config(cfg)
            hf._attn_implementation = cfg.attn_implementation
            return Qwen2ForCausalLM(hf)
        model = _load_local(Qwen2ForCausalLM, cfg.llm_weights_dir, "llm", cfg.attn_implementation)
        c = model.config
        _check_loaded("llm", cfg.llm_weights_dir, {
            "hidden_size": (cfg.llm.hidden_size, c.hidden_size),
            "vocab_size": (cfg.llm.vocab_size, c.vocab_size),
        })  # fmt: skip
        return model

    # ----------------------------------------------------------------------------- encoder
    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patch grid ``(h, w)``: token ``i`` of the image features is cell ``(i // w, i % w)``."""
        return self.config.vision.grid

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square encoder input, pixels."""
        return self.config.vision.image_size

    def _check_pixels(self, pixel_values: Tensor) -> None:
        s = self.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(
                f"pixel_values must be (B, 3, {s}, {s}) normalised encoder input, "
                f"got {tuple(pixel_values.shape)}"
            )

    def encode_image_layers(
        self, pixel_values: Tensor, layer: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Patch features ``(B, N, C_vision)``: (last hidden state, the chosen ``layer``).

        ``layer=None`` selects the last hidden state (after SigLIP's post-LayerNorm); an int
        indexes ``hidden_states`` (0 = patch embeddings, -1 = last block before the LayerNorm).
        One encoder pass serves both the projector and self-distillation.
        """
        self._check_pixels(pixel_values)
        out = self.vision(pixel_values=pixel_values, output_hidden_states=layer is not None)
        last = out.last_hidden_state
        return last, (last if layer is None else out.hidden_states[layer])

    def encode_image(self, pixel_values: Tensor, layer: int | None = None) -> Tensor:
        """``(B, 3, S, S)`` -> patch features ``(B, N, C_vision)``, ``N = h * w`` row-major."""
        return self.encode_image_layers(pixel_values, layer)[1]

    # ------------------------------------------------------------------------------ LLM side
    def _embed(
        self, input_ids: Tensor, attention_mask: Tensor, image_features: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> (inputs_embeds (B, N+T, D), attention mask (B, N+T), position ids (B, N+T))."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (B, T), got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
            )
        embeds = self.llm.get_input_embeddings()(input_ids)
        mask = attention_mask.to(torch.long)
        if image_features is not None:
            if image_features.shape[0] != input_ids.shape[0]:
                raise ValueError("image and text batch sizes differ")
            img = self.projector(image_features).to(embeds.dtype)
            embeds = torch.cat([img, embeds], dim=1)
            mask = torch.cat([mask.new_ones(img.shape[:2]), mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return embeds, mask, positions

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        pixel_values: Tensor | None = None,
        image_features: Tensor | None = None,
        return_logits: bool = False,
        return_features: bool = False,
        feature_layer: int | None = None,
    ) -> GranViTOutput:
        """Caption loss on answer tokens. Without ``pixel_values``/``image_features``: text only.

        Args:
            input_ids: ``(B, T)`` int64 token ids.
            attention_mask: ``(B, T)``, 1 = real token, 0 = padding.
            labels: ``(B, T)`` int64, ``input_ids`` at answer tokens, -100 elsewhere.
            pixel_values: ``(B, 3, S, S)`` normalised encoder input.
            image_features: ``(B, N, C_vision)`` precomputed :meth:`encode_image` output
                (instead of ``pixel_values``, to share one encoder pass with distillation).
            return_logits: also return ``(B, T, V)`` logits over the text positions.
            return_features: also return the patch features of ``feature_layer`` (None = last
                hidden state; see :meth:`encode_image_layers`) from the same encoder pass.
        """
        if pixel_values is not None and image_features is not None:
            raise ValueError("pass pixel_values or image_features, not both")
        layer_features = None
        if pixel_values is not None:
            layer = feature_layer if return_features else None
            image_features, layer_features = self.encode_image_layers(pixel_values, layer)
        elif return_features:
            raise ValueError("return_features needs pixel_values")
        embeds, mask, positions = self._embed(input_ids, attention_mask, image_features)
        hidden = self.llm.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state
        text_hidden = hidden[:, hidden.shape[1] - input_ids.shape[1] :]
        logits = self.llm.lm_head(text_hidden) if return_logits else None
        features = layer_features if return_features else None
        if labels is None:
            return GranViTOutput(None, torch.zeros((), dtype=torch.long), logits, features)
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels {tuple(labels.shape)} must match input_ids")
        target = labels[:, 1:]
        selected = target != IGNORE_INDEX
        answer_logits = self.llm.lm_head(text_hidden[:, :-1][selected]).float()
        count = selected.sum()
        loss_sum = F.cross_entropy(answer_logits, target[selected], reduction="sum")
        return GranViTOutput(loss_sum / count.clamp(min=1), count, logits, features)

    # ------------------------------------------------------------------------------- stages
    def set_trainable(self, stage: str) -> int:
        """Freeze everything except the parts ``stage`` trains (``model.stages.STAGES``);
        returns #trainable params."""
        trains = stage_spec(stage).trains
        parts = {"vision": self.vision, "projector": self.projector, "llm": self.llm}
        for name, module in parts.items():
            module.requires_grad_(name in trains)
        n = sum(p.numel() for p in self.parameters() if p.requires_grad)
        logger.info("stage %s: training %s (%d parameters)", stage, sorted(trains), n)
        return n

    @torch.no_grad()
    def init_coordinate_embeddings(
        self, values: Mapping[int, float], amplitude: float, num_frequencies: int = 16
    ) -> None:
        """Give coordinate tokens embeddings that vary smoothly with their value.

        Adds ``amplitude * [cos(pi f v), sin(pi f v)]`` for ``num_frequencies`` frequencies
        ``f`` from 1 to 32 half-turns over [0, 1] to the first ``2 * num_frequencies`` input
        embedding dims of each coordinate token (``values``: token id -> value in [0, 1]), and
        to its LM-head row when that is not tied. Why: 0.41 and 0.42 are otherwise unrelated
        random vectors, so a randomly initialised LLM must learn every one of the 101 values on
        its own; with a shared smooth code, what it learns of one value carries to its
        neighbours (its effect on the demo: ``benchmarks/RESULTS.md``). Meant for a randomly
        initialised LLM, before its first step.
        """
        if 2 * num_frequencies > self.config.llm.hidden_size:
            raise ValueError(
                f"{num_frequencies} frequencies need {2 * num_frequencies} embedding dims, "
                f"the LLM has {self.config.llm.hidden_size}"
            )
        if not values:
            raise ValueError("no coordinate tokens: the tokenizer has no coordinate strings")
        ids = torch.tensor(list(values))
        value = torch.tensor(list(values.values()), dtype=torch.float32)
        freqs = torch.logspace(0, 5, num_frequencies, base=2.0)
        angles = torch.pi * value[:, None] * freqs[None, :]
        code = amplitude * torch.cat([angles.cos(), angles.sin()], dim=1)
        embeddings = self.llm.get_input_embeddings().weight
        head = self.llm.get_output_embeddings().weight
        for weight in {id(embeddings): embeddings, id(head): head}.values():
            weight[ids, : code.shape[1]] += code.to(weight.dtype)

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts per part (shared tied weights counted once)."""
        parts = {"vision": self.vision, "projector": self.projector, "llm": self.llm}
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # ---------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        pixel_values: Tensor | None,
        input_ids: Tensor,
        attention_mask: Tensor,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
    ) -> Tensor:
        """Greedy batched decoding with a KV cache.

        Args:
            pixel_values: ``(B, 3, S, S)`` or ``None`` (text only).
            input_ids: ``(B, T)`` prompts, **left**-padded (every row ends with a real token).
            attention_mask: ``(B, T)``, 1 = real token.
            max_new_tokens: number of decoding steps at most.
        Returns:
            ``(B, max_new_tokens)`` int64 new token ids; after a row's ``eos_token_id`` (kept)
            the rest of the row is ``pad_token_id``.
        """
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("generate needs left-padded prompts (attention_mask[:, -1] all 1)")
        feats = None if pixel_values is None else self.encode_image(pixel_values)
        embeds, mask, positions = self._embed(input_ids, attention_mask, feats)
        out = self.llm.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True
        )
        batch = input_ids.shape[0]
        tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long)
        tokens = tokens.to(input_ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        for step in range(max_new_tokens):
            nxt = self.llm.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            tokens[:, step] = nxt
            done |= nxt == eos_token_id
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.llm.model(
                inputs_embeds=self.llm.get_input_embeddings()(nxt[:, None]),
                attention_mask=mask,
                position_ids=positions,
                cache=out.cache,
                use_cache=True,
            )
        return tokens
