"""A synthetic corpus for smoke tests: short sentences from a tiny grammar, fully determined by the seed.

It has real structure (a small vocabulary, word order, punctuation, line breaks), so a model that learns anything
beats the unigram baseline within a few dozen steps.
"""

from __future__ import annotations

import random

_SUBJECTS = ["the cat", "a dog", "the old king", "my friend", "the queen", "a small bird", "the miller"]
_VERBS = ["sees", "likes", "follows", "calls", "finds", "helps", "fears"]
_OBJECTS = ["the river", "a red apple", "the castle", "her brother", "the moon", "a wooden boat", "the garden"]
_ENDINGS = [".", ".", ".", "!", "?"]
_SPEAKERS = ["ANNA", "BORIS", "CLARA"]


def synthetic_text(num_chars: int, seed: int = 0) -> str:
    """About `num_chars` characters of dialogue-shaped sentences."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < num_chars:
        speaker = rng.choice(_SPEAKERS)
        sentences = []
        for _ in range(rng.randint(1, 3)):
            sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}"
            sentences.append(sentence[0].upper() + sentence[1:])
        block = f"{speaker}:\n{' '.join(sentences)}\n\n"
        lines.append(block)
        size += len(block)
    return "".join(lines)[:num_chars]
