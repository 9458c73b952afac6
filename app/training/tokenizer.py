"""An offline word-level ``CLIPTokenizer`` for the scene vocabulary.

CLIP's tokenizer is byte-pair encoding: a word is split into characters (the
last one marked ``</w>``) and merged pair by pair following ``merges.txt``.
We write merges that rebuild every vocabulary word into a single token, so
"a red circle" becomes exactly three tokens. Words outside the vocabulary
fall back to single characters, which are all in the vocabulary too.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from transformers import CLIPTokenizer

from .scenes import all_landscape_scenes, all_shape_scenes

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
MAX_LENGTH = 32  # start + 30 tokens + end: the longest caption has 11 words, and a word the vocabulary lacks
# costs one token per letter, so a prompt with a few unknown words still fits

EXTRA_WORDS = (
    "an image of picture photo painting with and the in on at over by under background "
    "sun moon stars starry sky mountain mountains sea lake forest trees tree water landscape "
    "morning evening day night sunset sunrise dawn dusk noon sunny serene calm peaceful "
    "big small large left right top bottom center middle corner grey gray pink brown"
).split()


def scene_vocabulary() -> list[str]:
    """Every word used by any caption, plus a few common neighbours, sorted."""
    words: set[str] = set(EXTRA_WORDS)
    for scene in [*all_shape_scenes(), *all_landscape_scenes()]:
        words.update(scene.caption.split())
    return sorted(words)


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE as CLIP does it: repeatedly merge the lowest-ranked adjacent pair."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, 1 << 30), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, index = min(pairs)
        if rank == 1 << 30:
            break
        first, second = symbols[index], symbols[index + 1]
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (token -> id) and ordered merges turning each word into one token.

    A new merge is always appended with the lowest priority, so it can never
    change how an earlier word is merged: that word already reached a single
    token using higher-priority merges.
    """
    characters = sorted(set(string.ascii_lowercase + string.digits + "'-.,!?"))
    tokens: list[str] = [*characters, *(c + "</w>" for c in characters)]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = _apply_merges([*word[:-1], word[-1] + "</w>"], ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            tokens.append(pair[0] + pair[1])
            symbols = _apply_merges(symbols, ranks)
    unique_tokens = list(dict.fromkeys(tokens))
    vocab = {token: index for index, token in enumerate(unique_tokens)}
    vocab[START_TOKEN] = len(vocab)
    vocab[END_TOKEN] = len(vocab)
    return vocab, merges


def write_tokenizer_files(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(scene_vocabulary())
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{first} {second}" for first, second in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tokenizer(directory: Path) -> CLIPTokenizer:
    """Write vocab.json/merges.txt into ``directory`` and load a CLIPTokenizer from them."""
    write_tokenizer_files(directory)
    return CLIPTokenizer(
        vocab=str(directory / "vocab.json"),
        merges=str(directory / "merges.txt"),
        model_max_length=MAX_LENGTH,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        unk_token=END_TOKEN,
        pad_token=END_TOKEN,
    )
