from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from granvit_pipeline.model.box_codec import coordinate_strings, format_box
from granvit_pipeline.model.tokenizer import WORD_END, load_tokenizer, normalize_text


def _tokens(tokenizer: Any, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_every_coordinate_is_one_token_in_any_position(tokenizer: Any) -> None:
    for value in coordinate_strings(2):
        for box in ([value, "0.50", "1.00", "1.00"], ["0.00", "0.00", value, "1.00"]):
            text = "[" + ", ".join(box) + "]"
            assert _tokens(tokenizer, text).count(value) == box.count(value)
    assert _tokens(tokenizer, "[0.12, 0.34, 0.56, 0.78]") == [
        "[",
        "0.12",
        ",▁",
        "0.34",
        ",▁",
        "0.56",
        ",▁",
        "0.78",
        "]",
    ]


def test_no_token_is_a_space(tokenizer: Any, samples: list[dict[str, Any]]) -> None:
    vocab = tokenizer.get_vocab()
    assert all(tok.strip() and tok != WORD_END for tok in vocab)
    text = "  a   red\tsquare  [0.10, 0.20, 0.30, 0.40] ok "
    assert all(t not in {WORD_END, " "} for t in _tokens(tokenizer, text))


@pytest.mark.parametrize(
    "text",
    [
        "a red square",
        "[0.00, 0.12, 0.99, 1.00]",
        "The dog's tail (left) is long!",
        "OCR: E-mail foo_bar@x.com, tel. 0.5/12",
        "zyxw unseen words 3.14159",
    ],
)
def test_decode_round_trip(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_round_trip_normalises_whitespace_only(
    tokenizer: Any, samples: list[dict[str, Any]]
) -> None:
    for sample in samples:
        for region in sample["regions"]:
            text = (
                "  " + region["text"].replace(" ", "   ") + " " + format_box([0.1, 0.2, 0.3, 0.4])
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == normalize_text(text)


def test_specials_and_save_load(tokenizer: Any, tmp_path: Path) -> None:
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]
    assert (
        tokenizer("a red", add_special_tokens=True)["input_ids"]
        == tokenizer("a red", add_special_tokens=False)["input_ids"]
    )
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "a red square [0.10, 0.20, 0.30, 0.40]"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path / "missing")


def test_pretrained_tokenizer_without_bos_and_sep_gets_them(tmp_path):
    """A Qwen-like tokenizer (eos only, no bos/sep/pad) loads ready for our sequence layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from granvit_pipeline.model.tokenizer import load_tokenizer

    core = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1, "box": 2, "[UNK]": 3}, "[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", unk_token="[UNK]"
    ).save_pretrained(tmp_path)

    tok = load_tokenizer(tmp_path)
    ids = {tok.bos_token_id, tok.sep_token_id, tok.eos_token_id}
    assert None not in ids and len(ids) == 3, "bos, sep and eos must be distinct tokens"
    assert tok.pad_token_id == tok.eos_token_id == 0
    assert tok("a box")["input_ids"] == [1, 2], "the existing vocabulary must not move"
