"""What LENS judges: the rows of each (candidate, seed) pair and the rubric prefixes of each pair."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from synque_ray.lens import prompts
from synque_ray.lens.rubric import Rubric
from synque_ray.lens.judge import prefix_key
from synque_ray.models import fast_tokenizer
from synque_ray.reading import RowSet, seeded_indices

Pairs = dict[tuple[str, int], int]  # (candidate, seed) -> pair number


def judged_rows(count: int, max_rows: int | None, seed: int) -> list[int]:
    """Indices of the rows judged: all of them, or `max_rows` drawn reproducibly per seed."""
    return seeded_indices(count, max_rows, seed)


def expected_rows(candidate: RowSet, real: dict[int, RowSet], max_rows: int | None) -> int:
    """Rows judged for one candidate over every seed: its own and U_r's."""
    return sum(len(judged_rows(candidate.size, max_rows, s)) + len(judged_rows(r.size, max_rows, s))
               for s, r in real.items())


def judging_plan(task: str, candidates: list[RowSet], seeds: list[int],
                 rubrics: dict[tuple[str, int], Rubric]) -> tuple[Pairs, dict[str, str]]:
    """A number per (candidate, seed) pair, and the two rubric prefixes of each pair."""
    pairs: Pairs = {}
    prefixes: dict[str, str] = {}
    for candidate in candidates:
        for seed in seeds:
            pair = pairs.setdefault((candidate.name, seed), len(pairs))
            rubric = rubrics[(candidate.name, seed)]
            prefixes[prefix_key(pair, "csr")] = prompts.judge_prefix(task, rubric.commonalities,
                                                                     rubric.synthetic_vs_real, False)
            prefixes[prefix_key(pair, "crs")] = prompts.judge_prefix(task, rubric.commonalities,
                                                                     rubric.real_vs_synthetic, True)
    return pairs, prefixes


def build_block(candidate: RowSet, real: dict[int, RowSet], pairs: Pairs, max_rows: int | None) -> pa.Table:
    """The rows to judge for one candidate (columns pair, dataset_id, seed, row_id, role, text)."""
    texts = candidate.texts
    parts = []
    for seed, rowset in real.items():
        pair = pairs[(candidate.name, seed)]
        for role, source in (("real", rowset.texts), ("synthetic", texts)):
            rows = judged_rows(len(source), max_rows, seed)
            parts.append(pa.table({
                "pair": pa.array([pair] * len(rows), pa.int64()),
                "dataset_id": pa.array([candidate.name] * len(rows), pa.string()),
                "seed": pa.array([seed] * len(rows), pa.int64()),
                "row_id": pa.array(rows, pa.int64()),
                "role": pa.array([role] * len(rows), pa.string()),
                "text": pa.array([source[i] for i in rows], pa.string()),
            }))
    return pa.concat_tables(parts)


def token_counter(folder: Path) -> Callable[[str], int]:
    """Tokens of a text under a local model's own tokenizer, special tokens left out: its
    `tokenizer.json` without transformers where it has one (0.26-0.36 s against 5.9-7.2 s for a fresh
    driver to import transformers and load AutoTokenizer: BENCHMARKS.md)."""
    fast = fast_tokenizer(folder)
    if fast is not None:
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def rubrics_too_long(scorer_path: str, prefixes: dict[str, str], pairs: Pairs, max_model_len: int) -> dict[str, str]:
    """Candidates whose rubric leaves no room for a row in the scorer's context, with the reason.

    Measured with the scorer's own tokenizer when it is a local folder (hub ids are left
    to the engine)."""
    if not Path(scorer_path).is_dir():
        return {}
    count = token_counter(Path(scorer_path))
    room = max_model_len - 96  # the chat template, the question and a few tokens of the row
    names = {str(number): pair for pair, number in pairs.items()}
    failed: dict[str, str] = {}
    for key, prefix in prefixes.items():
        length = count(prefix)
        dataset_id, seed = names[key.split(":")[0]]
        if length > room and dataset_id not in failed:
            failed[dataset_id] = (
                f"lens.max_model_len: the rubric of candidate '{dataset_id}' seed {seed} takes {length} tokens, "
                f"more than the {max_model_len} of lens.max_model_len leave for a row; raise it or lower "
                "lens.rubric_points")
    return failed
