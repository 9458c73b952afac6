"""Caption noise for training and the robustness set's word list (app/training/caption_noise.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.training.caption_noise import (
    CaptionNoiser,
    add_caption_noise,
    filler_phrases,
    insert_unseen_words,
    known_words,
    shorten_to_time_of_day,
    unseen_words,
)
from app.training.scenes import all_landscape_scenes, all_shape_scenes
from app.training.tokenizer import build_tokenizer, scene_vocabulary


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_evaluation_words_are_unseen_by_training_and_tokenizer(tokenizer) -> None:
    words = unseen_words()
    assert len(words) >= 100 and len(set(words)) == len(words)
    noise_words = {word for phrase in filler_phrases() for word in phrase.split()}
    assert not set(words) & noise_words
    assert not set(words) & set(scene_vocabulary())
    for word in words:
        assert len(tokenizer.tokenize(word)) >= 2, word  # split into pieces: the tokenizer has no such word


def test_noise_keeps_the_caption_words_in_order(tokenizer) -> None:
    rng = np.random.default_rng(0)
    captions = sorted({s.caption for s in [*all_shape_scenes()[::37], *all_landscape_scenes()[::11]]})
    for caption in captions:
        noisy = add_caption_noise(caption, rng, known_words(tokenizer))
        assert noisy.lower() != caption
        remaining = iter(tokenizer.tokenize(noisy))
        assert all(f"{word}</w>" in remaining for word in caption.split()), (caption, noisy)


def test_noise_is_reproducible_from_the_generator(tokenizer) -> None:
    known = known_words(tokenizer)
    first = [add_caption_noise("a red circle", np.random.default_rng(5), known) for _ in range(3)]
    assert len(set(first)) == 1
    assert add_caption_noise("a red circle", np.random.default_rng(6), known) != first[0]


def test_capitals_do_not_change_the_tokens(tokenizer) -> None:
    assert tokenizer("A Blue CIRCLE").input_ids == tokenizer("a blue circle").input_ids


def test_noiser_rows_fit_the_tokenizer_and_keep_clean_rows_clean(tokenizer) -> None:
    captions = ["a red circle on a blue background in the top left", "a forest by a lake at sunset"]
    clean = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    rows = CaptionNoiser(captions, tokenizer, fraction=0.0, short_fraction=0.0).token_ids(np.array([0, 1] * 8),
                                                                                        np.random.default_rng(1))
    assert rows == clean * 8
    noisy = CaptionNoiser(captions, tokenizer, fraction=1.0, short_fraction=0.0)
    indices = np.zeros(64, dtype=np.int64)
    rows = noisy.token_ids(indices, np.random.default_rng(2))
    assert all(len(row) == tokenizer.model_max_length for row in rows)
    assert sum(row != clean[0] for row in rows) == len(rows)


def test_short_time_of_day_prompts(tokenizer) -> None:
    rng = np.random.default_rng(0)
    shortened = CaptionNoiser(["a forest by a lake at sunset"], tokenizer, fraction=0.0, short_fraction=1.0)
    row = shortened.token_ids(np.array([0]), rng)[0]
    assert tokenizer.decode(row, skip_special_tokens=True) in ("a sunset", "sunset", "a dusk")
    assert shorten_to_time_of_day("a forest by a lake at sunset", rng) in ("a sunset", "sunset", "a dusk")
    assert shorten_to_time_of_day("a red circle", rng) == "a red circle"


def test_robustness_prompts_insert_two_listed_words() -> None:
    rng = np.random.default_rng(3)
    caption = "a green square on a white background in the center"
    prompt = insert_unseen_words(caption, rng)
    added = prompt.split()
    for word in caption.split():
        added.remove(word)
    assert len(added) == 2 and all(word in unseen_words() for word in added)


def test_a_longer_position_table_keeps_the_base_outputs() -> None:
    """The fine-tune grows the text encoder's positions: a caption that fit before encodes exactly as before."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from app.training.finetune import extend_positions

    config = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    base = CLIPTextModel(CLIPTextConfig(max_position_embeddings=8, **config)).eval()
    longer = CLIPTextModel(CLIPTextConfig(max_position_embeddings=12, **config)).eval()
    longer.load_state_dict(extend_positions(base.state_dict(), 12))
    ids = torch.tensor([[1, 5, 7, 9, 2, 2, 2, 2]])
    with torch.no_grad():
        torch.testing.assert_close(longer(ids)[0], base(ids)[0])
        padded = torch.cat([ids, torch.full((1, 4), 2)], dim=1)
        torch.testing.assert_close(longer(padded)[0][:, :8], base(ids)[0])  # causal: later padding changes nothing before it
    with pytest.raises(ValueError, match="cannot shrink"):
        extend_positions(longer.state_dict(), 8)
