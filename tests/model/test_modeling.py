from __future__ import annotations

import time
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from granvit_pipeline.model.config import GranViTConfig, fit_vocab, get_preset
from granvit_pipeline.model.modeling import GranViT


def _batch(cfg: GranViTConfig, b: int = 3, t: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.vision.image_size
    ids = torch.randint(5, cfg.llm.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, -2:] = 0  # right padding on row 0
    labels = torch.full((b, t), -100)
    labels[:, 5:] = ids[:, 5:]
    labels[0, -2:] = -100
    return {
        "pixel_values": torch.randn(b, 3, s, s, generator=g),
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
    }


def _forward(model: GranViT, batch: dict[str, torch.Tensor], **kw: Any) -> Any:
    return model(
        batch["input_ids"],
        batch["attention_mask"],
        batch["labels"],
        pixel_values=batch["pixel_values"],
        **kw,
    )


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_forward_backward_shapes(preset: str) -> None:
    torch.manual_seed(0)
    cfg = get_preset(preset)
    model = GranViT(cfg)
    batch = _batch(cfg)
    _forward(model, batch).loss.backward()  # warm-up (lazy kernel init)
    model.zero_grad()
    start = time.perf_counter()
    out = _forward(model, batch, return_logits=True)
    out.loss.backward()
    elapsed = time.perf_counter() - start
    assert out.logits.shape == (3, 9, cfg.llm.vocab_size)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert int(out.num_answer_tokens) == int((batch["labels"][:, 1:] != -100).sum())
    assert all(p.grad is not None for p in model.projector.parameters())
    assert model.encode_image(batch["pixel_values"]).shape == (
        3,
        cfg.num_image_tokens,
        cfg.vision.hidden_size,
    )
    if preset == "tiny":
        assert elapsed < 0.5


def test_paper_preset_parameter_counts_on_meta() -> None:
    with torch.device("meta"):
        model = GranViT(get_preset("paper"))
    counts = model.num_parameters()
    assert 395e6 < counts["vision"] < 430e6  # SigLIP2-so400m (without the pooling head)
    assert 1.50e9 < counts["llm"] < 1.58e9  # Qwen2.5-1.5B, tied embeddings
    assert model.patch_grid == (32, 32)
    assert next(model.parameters()).device.type == "meta"


def test_loss_is_hand_computed_ce_on_answers_only(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config)
    out = _forward(tiny_model, batch, return_logits=True)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != -100
    expected = F.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)


def test_only_answer_labels_count(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config)
    base = _forward(tiny_model, batch).loss
    unmasked = batch["labels"].clone()
    unmasked[:, 1:5] = batch["input_ids"][:, 1:5]  # prompt positions now count -> loss changes
    assert not torch.allclose(_forward(tiny_model, dict(batch, labels=unmasked)).loss, base)
    answer = batch["labels"].clone()
    answer[1, 6] = (answer[1, 6] + 1) % tiny_model.config.llm.vocab_size
    assert not torch.allclose(_forward(tiny_model, dict(batch, labels=answer)).loss, base)
    prompt_ids = batch["input_ids"].clone()
    prompt_ids[0, 1] += 1  # the prompt is not a target but still conditions the answers
    changed = _forward(tiny_model, dict(batch, input_ids=prompt_ids)).loss
    assert not torch.allclose(changed, base)
    assert int(_forward(tiny_model, batch).num_answer_tokens) == int(
        (batch["labels"][:, 1:] != -100).sum()
    )


def test_padding_side_does_not_change_the_loss(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config, b=2)
    right = _forward(tiny_model, batch).loss
    rolled = {k: v.clone() for k, v in batch.items()}
    for key in ("input_ids", "attention_mask", "labels"):
        rolled[key][0] = torch.roll(batch[key][0], 2)  # row 0 ends with 2 pads -> left padding
    torch.testing.assert_close(_forward(tiny_model, rolled).loss, right, rtol=1e-5, atol=1e-5)


def test_text_only_forward(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config)
    out = tiny_model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    out.loss.backward()
    assert all(p.grad is None for p in tiny_model.vision.parameters())
    assert tiny_model.llm.get_input_embeddings().weight.grad is not None


def test_wrong_inputs_raise(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config)
    with pytest.raises(ValueError, match="pixel_values must be"):
        _forward(tiny_model, dict(batch, pixel_values=batch["pixel_values"][:, :, :16]))
    with pytest.raises(ValueError, match="labels"):
        _forward(tiny_model, dict(batch, labels=batch["labels"][:, :4]))
    with pytest.raises(ValueError, match="unknown stage"):
        tiny_model.set_trainable("stage3")


def test_generate_matches_step_by_step_argmax(tiny_model: GranViT) -> None:
    cfg = tiny_model.config
    batch = _batch(cfg, b=3, t=6, seed=1)
    ids, mask = batch["input_ids"], torch.ones(3, 6, dtype=torch.long)
    mask[1, :2] = 0  # left padding
    ids[1, :2] = 0
    tiny_model.eval()
    new = tiny_model.generate(
        batch["pixel_values"], ids, mask, max_new_tokens=5, eos_token_id=-1, pad_token_id=0
    )
    assert new.shape == (3, 5)
    for row in range(3):
        real = mask[row].bool()
        seq = ids[row, real][None]
        for step in range(5):
            with torch.no_grad():
                logits = tiny_model(
                    seq,
                    torch.ones_like(seq),
                    pixel_values=batch["pixel_values"][row : row + 1],
                    return_logits=True,
                ).logits
            nxt = logits[0, -1].argmax()
            assert int(new[row, step]) == int(nxt)
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)


def test_generate_stops_at_eos_and_pads(tiny_model: GranViT) -> None:
    batch = _batch(tiny_model.config, b=2, t=6)
    ids, mask = batch["input_ids"], torch.ones(2, 6, dtype=torch.long)
    first = tiny_model.generate(
        batch["pixel_values"], ids, mask, 4, eos_token_id=-1, pad_token_id=0
    )
    eos = int(first[0, 1])
    out = tiny_model.generate(batch["pixel_values"], ids, mask, 4, eos_token_id=eos, pad_token_id=0)
    for row in range(2):
        hits = (first[row] == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else 4  # eos kept, pads after it
        assert out[row, :stop].tolist() == first[row, :stop].tolist()
        assert out[row, stop:].tolist() == [0] * (4 - stop)
    with pytest.raises(ValueError, match="left-padded"):
        tiny_model.generate(batch["pixel_values"], ids, batch["attention_mask"], 2, 1, 0)


def test_fit_vocab_sets_llm_rows(tiny_config: GranViTConfig) -> None:
    assert fit_vocab(get_preset("tiny"), 123).llm.vocab_size == 123
    assert (
        GranViT(fit_vocab(get_preset("tiny"), 77)).llm.get_input_embeddings().weight.shape[0] == 77
    )


def test_text_only_generate_ignores_left_padding(tiny_model: GranViT) -> None:
    tiny_model.eval()
    ids = torch.randint(
        5, tiny_model.config.llm.vocab_size, (2, 6), generator=torch.Generator().manual_seed(2)
    )
    mask = torch.ones_like(ids)
    padded, padded_mask = ids.clone(), mask.clone()
    padded[1, :3], padded_mask[1, :3] = 0, 0
    together = tiny_model.generate(None, padded, padded_mask, 4, eos_token_id=-1, pad_token_id=0)
    alone = tiny_model.generate(None, ids[1:, 3:], mask[1:, 3:], 4, eos_token_id=-1, pad_token_id=0)
    assert together[1].tolist() == alone[0].tolist()


def test_coordinate_embeddings_vary_smoothly_with_the_value(tokenizer: Any) -> None:
    from granvit_pipeline.model.tokenizer import coordinate_token_values

    values = coordinate_token_values(tokenizer)
    assert len(values) == 101 and values[tokenizer.convert_tokens_to_ids("0.42")] == 0.42
    torch.manual_seed(0)
    model = GranViT(fit_vocab(get_preset("tiny"), len(tokenizer)))
    before = model.llm.get_input_embeddings().weight.detach().clone()
    model.init_coordinate_embeddings(values, amplitude=0.1)
    after = model.llm.get_input_embeddings().weight.detach()
    ids = torch.tensor(list(values))
    others = torch.ones(len(before), dtype=torch.bool)
    others[ids] = False
    assert torch.equal(after[others], before[others])  # only coordinate rows change
    # tied head: the code is added once, not once per name of the shared matrix
    assert model.llm.get_output_embeddings().weight.data_ptr() == after.data_ptr()
    added = (after - before)[ids]
    torch.testing.assert_close(added[:, 0], 0.1 * torch.cos(torch.pi * torch.tensor(
        list(values.values()))))  # fmt: skip

    def cos(a: str, b: str) -> float:
        i, j = tokenizer.convert_tokens_to_ids([a, b])
        return float(F.cosine_similarity(after[i], after[j], dim=0))

    assert cos("0.41", "0.42") > cos("0.41", "0.60") + 0.3
    with pytest.raises(ValueError, match="embedding dims"):
        model.init_coordinate_embeddings(values, 0.1, num_frequencies=17)
