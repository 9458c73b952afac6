"""Unseen-word noise for training captions, and the robustness set's word list.

A new user's prompt is full of words the embedded model never saw: "one",
"cute", "a painting of", "highly detailed". The tokenizer splits such a word
into single characters, and a model trained only on clean captions lets
those pieces change the picture ("one blue circle" came out red). Training
on captions with such words inserted (``add_caption_noise``) teaches it that
words it does not know carry no colour, shape, position or time of day.

Two fixed word lists live beside this module:

* ``filler_words.txt``: the training noise (words and phrases);
* ``unseen_words.txt``: evaluation only, disjoint from the noise and from the
  tokenizer's vocabulary, so the robustness set measures words never seen.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
# A landscape caption's time phrase -> short prompts that name only the time of day ("A beautiful sunset").
SHORT_TIME_PROMPTS: dict[str, tuple[str, ...]] = {
    "at sunset": ("a sunset", "sunset", "a dusk"), "at dusk": ("a sunset", "dusk"),
    "at dawn": ("a dawn", "dawn", "a sunrise"), "at sunrise": ("a sunrise", "sunrise"),
    "at night": ("a night", "night"), "during the day": ("a sunny day", "a day"),
    "at noon": ("noon", "a sunny day"), "on a sunny day": ("a sunny day",),
}
SHORT_FRACTION = 0.1  # of landscape captions with a time phrase
PUNCTUATION = (",", ",", ".", "!", "?", "...", ":", ";", "-", "(", ")", "'")


def _read_list(name: str) -> tuple[str, ...]:
    lines = (line.strip() for line in (HERE / name).read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


@cache
def filler_phrases() -> tuple[str, ...]:
    """The training noise: one word or phrase per entry."""
    return _read_list("filler_words.txt")


@cache
def unseen_words() -> tuple[str, ...]:
    """The robustness set's words: never in a training caption, not in the tokenizer's vocabulary."""
    return tuple(word for line in _read_list("unseen_words.txt") for word in line.split())


def known_words(tokenizer: object) -> frozenset[str]:
    """The words ``tokenizer`` keeps whole (its tokens that end a word)."""
    vocabulary = tokenizer.get_vocab()  # type: ignore[attr-defined]
    return frozenset(token.removesuffix("</w>") for token in vocabulary if token.endswith("</w>"))


def random_letters(rng: np.random.Generator, known_words: frozenset[str]) -> str:
    """A made-up word of 2-10 letters, so the noise is not just a list the model can memorise."""
    while True:
        word = "".join(rng.choice(list(string.ascii_lowercase), size=int(rng.integers(2, 11))))
        if word not in known_words:
            return word


def _noise_item(rng: np.random.Generator, known_words: frozenset[str]) -> str:
    draw = rng.random()
    if draw < 0.3:
        return random_letters(rng, known_words)
    if draw < 0.4:
        return str(int(rng.integers(0, 10_000)))
    phrases = filler_phrases()
    return phrases[int(rng.integers(0, len(phrases)))]


def _capitalise(text: str, rng: np.random.Generator) -> str:
    draw = rng.random()
    if draw < 0.5:
        return text[:1].upper() + text[1:]
    if draw < 0.7:
        return text.title()
    if draw < 0.75:
        return text.upper()
    return text


def shorten_to_time_of_day(caption: str, rng: np.random.Generator) -> str:
    """A landscape caption cut to its time of day ("a forest at sunset" -> "a sunset"), else the caption."""
    for phrase, shorter in SHORT_TIME_PROMPTS.items():
        if caption.endswith(" " + phrase):
            return shorter[int(rng.integers(0, len(shorter)))]
    return caption


def add_caption_noise(caption: str, rng: np.random.Generator, known_words: frozenset[str]) -> str:
    """``caption`` with 1-3 filler words or phrases inserted, maybe punctuation and capitals.

    The caption's own words keep their order, so what it says stays true of its image.
    """
    words = caption.split()
    for _ in range(int(rng.integers(1, 4))):
        item = _noise_item(rng, known_words)
        if rng.random() < 0.25:
            item = f"{item}{PUNCTUATION[int(rng.integers(0, len(PUNCTUATION)))]}"
        words.insert(int(rng.integers(0, len(words) + 1)), item)
    if rng.random() < 0.3:
        index = int(rng.integers(0, len(words)))
        words[index] += PUNCTUATION[int(rng.integers(0, 5))]
    return _capitalise(" ".join(words), rng)


class CaptionNoiser:
    """Token ids of pool captions, a ``fraction`` of them with noise added; noise that would not fit is dropped."""

    def __init__(self, captions: list[str], tokenizer: object, fraction: float,
                 short_fraction: float = SHORT_FRACTION) -> None:
        self.captions, self.tokenizer, self.fraction, self.short_fraction = captions, tokenizer, fraction, short_fraction
        self.max_length: int = tokenizer.model_max_length  # type: ignore[attr-defined]
        self.known_words = known_words(tokenizer)

    def token_ids(self, indices: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        rows = []
        for index in indices:
            caption = self.captions[int(index)]
            if rng.random() < self.short_fraction:
                caption = shorten_to_time_of_day(caption, rng)
            text = caption
            if rng.random() < self.fraction:
                for _ in range(4):
                    text = add_caption_noise(caption, rng, self.known_words)
                    if len(self.tokenizer(text).input_ids) <= self.max_length:  # type: ignore[operator]
                        break
                else:
                    text = caption
            rows.append(self.tokenizer(text, padding="max_length", max_length=self.max_length,  # type: ignore[operator]
                                       truncation=True).input_ids)
        return rows


def insert_unseen_words(caption: str, rng: np.random.Generator, count: int = 2) -> str:
    """The robustness set's prompt: ``count`` evaluation-only words inserted at random places."""
    words, vocabulary = caption.split(), unseen_words()
    for _ in range(count):
        words.insert(int(rng.integers(0, len(words) + 1)), vocabulary[int(rng.integers(0, len(vocabulary)))])
    return " ".join(words)
