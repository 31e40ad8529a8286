"""LENS step 1: the rubric of one (candidate, seed) pair (docs/proxies.md, LENS).

A writer model sees up to `rubric_sample_size` rows of U_r and of the candidate and
writes three lists of `rubric_points` short statements: what both share (C), how the
real rows differ from the synthetic ones (C_{r,s}) and the reverse (C_{s,r}).

What a rubric is (`Rubric`, or a user's rubric file) and what its writer is shown
(`sample_rows`, `fit_rows`). The writers are in `writers.py`, the parsing of their
answers in `parsing.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synque_ray.errors import UserError
from synque_ray.lens.parsing import max_answer_tokens
from synque_ray.reading import seeded_indices

KEYS = ("commonalities", "real_vs_synthetic", "synthetic_vs_real")
ROW_DISPLAY_CHARS = 400  # a row shown to the writer is cut to this many characters


# ---------------------------------------------------------------- rubrics


@dataclass
class Rubric:
    commonalities: list[str]
    real_vs_synthetic: list[str]  # C_{r,s}
    synthetic_vs_real: list[str]  # C_{s,r}
    source: str = ""  # the writer's model id, or the rubric file
    short: bool = False  # a list came back with fewer points than asked, after every retry
    attempts: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in (*KEYS, "source", "short", "attempts")}

    @classmethod
    def from_json(cls, data: dict, where: str) -> Rubric:
        if not isinstance(data, dict):
            raise UserError(f"{where}: a rubric must be an object with the keys {', '.join(KEYS)}")
        lists = {}
        for key in KEYS:
            value = data.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise UserError(f"{where}: key '{key}' must be a non-empty list of strings")
            lists[key] = [v.strip() for v in value]
        return cls(**lists, source=str(data.get("source", where)), short=bool(data.get("short", False)),
                   attempts=dict(data.get("attempts", {})))

    @property
    def digest(self) -> str:
        payload = json.dumps([getattr(self, k) for k in KEYS])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_rubric_file(path: str, dataset_ids: Sequence[str]) -> dict[str, Rubric]:
    """A user's rubric file: one rubric for every candidate, or {dataset_id: rubric}."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{path}: lens.rubric_file not found")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: lens.rubric_file is not valid JSON") from None
    if isinstance(data, dict) and "commonalities" in data:
        rubric = Rubric.from_json(data, str(path))
        rubric.source = f"file:{file.name}"
        return {dataset_id: rubric for dataset_id in dataset_ids}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a rubric object or an object of rubrics keyed by candidate id")
    rubrics = {}
    for dataset_id in dataset_ids:
        if dataset_id not in data:
            raise UserError(f"{path}: no rubric for candidate '{dataset_id}'")
        rubrics[dataset_id] = Rubric.from_json(data[dataset_id], f"{path}: candidate '{dataset_id}'")
        rubrics[dataset_id].source = f"file:{file.name}"
    return rubrics


# ---------------------------------------------------------------- what the writer sees


def sample_rows(texts: list[str], size: int, seed: int) -> list[str]:
    """Up to `size` rows, drawn reproducibly, in their original order."""
    return [texts[i] for i in seeded_indices(len(texts), size, seed)]


def _display(row: str) -> str:
    row = " ".join(row.split())
    return row if len(row) <= ROW_DISPLAY_CHARS else row[: ROW_DISPLAY_CHARS - 1] + "…"


def fit_rows(real: list[str], synthetic: list[str], budget: int,
             count_tokens: Callable[[str], int]) -> tuple[list[str], list[str]]:
    """Rows of each side, alternately, while their tokens fit in `budget` (at least one each)."""
    real, synthetic = [_display(r) for r in real], [_display(s) for s in synthetic]
    kept_real: list[str] = []
    kept_synth: list[str] = []
    used = 0
    for i in range(max(len(real), len(synthetic))):
        for source, kept in ((real, kept_real), (synthetic, kept_synth)):
            if i < len(source):
                cost = count_tokens(source[i]) + 4
                if used + cost > budget and kept:
                    return kept_real, kept_synth
                kept.append(source[i])
                used += cost
    return kept_real, kept_synth


def approximate_tokens(text: str) -> int:
    return len(text) // 3 + 1


@dataclass
class RubricRequest:
    dataset_id: str
    seed: int
    real_rows: list[str]  # already sampled and fitted
    synthetic_rows: list[str]


def prompt_budget(max_model_len: int, n: int) -> int:
    """Tokens left for sample rows once the instructions, the lists and the answer fit."""
    return max(256, max_model_len - max_answer_tokens(n) - 48 * n - 400)
