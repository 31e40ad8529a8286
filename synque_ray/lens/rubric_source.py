"""Where LENS rubrics come from, and their reuse: `rubrics/<candidate>/seed<seed>.json`.

A `RubricSource` is resolved once: a user's rubric file, an OpenAI-compatible
endpoint, or a vLLM engine on Ray Data. `RubricSource.prepare` returns the rubric of
every (candidate, seed): reused when its saved key matches, else written (all missing
ones in one go) and saved; a pair whose writer gives no usable list fails its
candidate, and the others go on. A written rubric is reused by its key, which holds
the content and not the name: a renamed candidate, or a twin of another, gets the
rubric saved under the other id (copied under its own), and twins get one, written once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from synque_ray.config import LensConfig, ResourcesConfig
from synque_ray.errors import UserError
from synque_ray.lens import prompts
from synque_ray.lens.engine import engine_settings
from synque_ray.lens.rubric import (
    Rubric,
    RubricRequest,
    approximate_tokens,
    fit_rows,
    load_rubric_file,
    prompt_budget,
    sample_rows,
)
from synque_ray.lens.writers import OpenAIWriter, write_rubrics, write_rubrics_on_ray
from synque_ray.models import resolve_llm
from synque_ray.reading import RowSet
from synque_ray.stage.base import digest
from synque_ray.storage import Store

Pair = tuple[str, int]  # (candidate, seed)


@dataclass
class Rubrics:
    by_pair: dict[Pair, Rubric] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> why no rubric
    written: int = 0
    reused: int = 0


class RubricSource:
    def __init__(self, lens: LensConfig, resources: ResourcesConfig):
        self.lens, self.resources = lens, resources
        writer = lens.rubric_writer
        self.endpoint = dict(writer) if isinstance(writer, dict) else None
        self.path: str | None = None  # what vLLM loads: set only when a local model writes the rubrics
        if lens.rubric_file:
            self.model_id = f"file:{lens.rubric_file}"
        elif isinstance(writer, dict):
            self.model_id = f"{writer['model']}@{writer['openai_base_url']}"
        else:
            self.path, self.model_id = resolve_llm(writer, "lens.rubric_writer")

    def from_file(self, candidates: list[RowSet]) -> dict[str, Rubric] | None:
        """The user's rubric per candidate (checked: one for each), or None without a rubric file."""
        if not self.lens.rubric_file:
            return None
        return load_rubric_file(self.lens.rubric_file, [c.name for c in candidates])

    def key(self, candidate: RowSet, real: RowSet, written_by: str) -> str:
        lens = self.lens
        return digest({"candidate": candidate.content_hash, "real": real.content_hash, "writer": written_by,
                       "points": lens.rubric_points, "sample": lens.rubric_sample_size, "task": lens.task,
                       "prompts": prompts.PROMPT_VERSION, "retries": lens.rubric_retries})

    def prepare(self, candidates: list[RowSet], real: dict[int, RowSet], store: Store, fresh: bool) -> Rubrics:
        """The rubric of every (candidate, seed), saved under the candidate's current id.

        A written rubric is a function of its key (the texts, U_r, the writer and its settings),
        not of the candidate's name: one saved under another id with the same key (a renamed
        file, a twin) is reused, and candidates with one key get one rubric, written once."""
        file_rubrics = self.from_file(candidates)
        written_by = self.model_id
        if file_rubrics is not None:  # keyed by the file's content, so an edited file is taken up
            written_by = "file:" + digest({k: v.to_json() for k, v in file_rubrics.items()})
        rubrics, needed = Rubrics(), []
        saved_by_key: dict[str, Rubric] | None = None  # every saved rubric, read at the first miss
        for candidate in candidates:
            for seed, rowset in real.items():
                key = self.key(candidate, rowset, written_by)
                saved = None if fresh else _load(store, candidate.name, seed, key)
                if saved is None and not fresh and file_rubrics is None:  # a user's file is per id: never borrowed
                    saved_by_key = _saved_by_key(store) if saved_by_key is None else saved_by_key
                    saved = saved_by_key.get(key)
                    if saved is not None:
                        _save(store, candidate.name, seed, key, saved)
                if saved is not None:
                    rubrics.by_pair[(candidate.name, seed)] = saved
                    rubrics.reused += 1
                elif file_rubrics is not None:
                    rubrics.by_pair[(candidate.name, seed)] = file_rubrics[candidate.name]
                    _save(store, candidate.name, seed, key, file_rubrics[candidate.name])
                else:
                    needed.append((candidate, seed, key))
        unique: dict[str, tuple[RowSet, int, str]] = {}  # one write per key: twins share it
        for item in needed:
            unique.setdefault(item[2], item)
        rubrics.written = len(unique)
        results = dict(zip(unique, self._write(list(unique.values()), real), strict=True))
        for candidate, seed, key in needed:
            result = results[key]
            if isinstance(result, str):
                rubrics.failed.setdefault(candidate.name, result)
                continue
            result.source = self.model_id
            _save(store, candidate.name, seed, key, result)
            rubrics.by_pair[(candidate.name, seed)] = result
        return rubrics

    def _write(self, needed: list[tuple[RowSet, int, str]], real: dict[int, RowSet]) -> list[Rubric | str]:
        """A rubric, or a one-line reason, per needed (candidate, seed)."""
        if not needed:
            return []
        lens = self.lens
        samples = [(c, seed, sample_rows(real[seed].texts, lens.rubric_sample_size, seed),
                    sample_rows(c.texts, lens.rubric_sample_size, seed)) for c, seed, _ in needed]
        if self.endpoint is not None:
            budget = prompt_budget(int(self.endpoint.get("context_tokens", 8192)), lens.rubric_points)
            requests = [RubricRequest(c.name, seed, *fit_rows(r, s, budget, approximate_tokens))
                        for c, seed, r, s in samples]
            return write_rubrics(OpenAIWriter(self.endpoint), requests, lens.task, lens.rubric_points,
                                 lens.rubric_retries)
        rows = [{"pair": pair, "dataset_id": c.name, "seed": seed, "real_rows": json.dumps(r),
                 "synthetic_rows": json.dumps(s)} for pair, (c, seed, r, s) in enumerate(samples)]
        assert self.path is not None  # with a rubric file nothing is `needed`, so a local model writes here
        settings = engine_settings(lens, self.resources, self.path)
        results = write_rubrics_on_ray(settings, self.model_id, rows, lens.task, lens.rubric_points,
                                       lens.rubric_retries)
        return [results.get(pair, f"lens: no rubric came back for candidate '{c.name}' seed {seed}")
                for pair, (c, seed, _, _) in enumerate(samples)]


def _path(dataset_id: str, seed: int) -> str:
    return f"rubrics/{dataset_id}/seed{seed}.json"


def _load(store: Store, dataset_id: str, seed: int, key: str) -> Rubric | None:
    saved = store.read_json(_path(dataset_id, seed))
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    try:
        return Rubric.from_json(saved, store.display(_path(dataset_id, seed)))
    except UserError:
        return None  # a damaged file: written again


def _saved_by_key(store: Store) -> dict[str, Rubric]:
    """{key: rubric} of every readable rubric saved under `rubrics/`, whatever id it is saved under."""
    found: dict[str, Rubric] = {}
    for folder, is_folder in store.listing("rubrics") or []:
        for name, nested in (store.listing(f"rubrics/{folder}") or []) if is_folder else []:
            saved = None if nested or not name.endswith(".json") else store.read_json(f"rubrics/{folder}/{name}")
            if not isinstance(saved, dict) or not isinstance(saved.get("key"), str) or saved["key"] in found:
                continue
            try:
                found[saved["key"]] = Rubric.from_json(saved, store.display(f"rubrics/{folder}/{name}"))
            except UserError:
                continue  # a damaged file: not reused
    return found


def _save(store: Store, dataset_id: str, seed: int, key: str, rubric: Rubric) -> None:
    store.write_json(_path(dataset_id, seed), {"key": key, "dataset_id": dataset_id, "seed": seed,
                                               **rubric.to_json()})
