"""Rows damaged the ways generators damage them, for the fluency proxy's checks
(tests/proxies/test_fluency.py, benchmarks/bench_fluency.py). Each keeps the row's words, so a
sentence embedding barely moves, while a language model finds the row far less likely."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# The sentiment benchmark's real pool, beside the checkout (../shared, as the Makefile has it) or
# beside the folder of worktrees that holds it.
POOLS = tuple(base / "shared/bench/sentiment/real/pool.json" for base in (REPO.parent, REPO.parent.parent))


def real_headlines() -> list[str] | None:
    """The real pool's headlines, or None where the benchmark data is not there."""
    path = next((p for p in POOLS if p.is_file()), None)
    return None if path is None else [row["headline"] for row in json.loads(path.read_text())]


def shuffled_words(text: str, rng: np.random.Generator) -> str:
    """The row's words in a random order (a different one whenever the row has two distinct words)."""
    words = text.split()
    for _ in range(10):
        order = rng.permutation(len(words))
        if len(set(words)) < 2 or any(order != np.arange(len(words))):
            break
    return " ".join(words[i] for i in order)


def noised_chars(text: str, rng: np.random.Generator, rate: float = 0.15) -> str:
    """Each letter replaced by a random lowercase letter with probability `rate` (typos, OCR noise)."""
    letters = string.ascii_lowercase
    return "".join(letters[rng.integers(26)] if ch.isalpha() and rng.random() < rate else ch for ch in text)


def cut_mid_sentence(text: str) -> str:
    """The first half of the row's words (at least one): a row whose generation stopped early."""
    words = text.split()
    return " ".join(words[: max(1, len(words) // 2)])
