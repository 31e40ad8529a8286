"""A finished run's candidate files, found again from its run.json.

The report shows a candidate's rows and `synque select` copies them; both join them to
row_scores.parquet by row index. That join is only right while the file still holds the
rows the run scored, so every file is checked against the content hash the run recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synque_ray.errors import UserError
from synque_ray.reading import content_hash, list_candidates, read_texts


@dataclass(frozen=True)
class CandidateFile:
    """One candidate's file as it is now, beside the hash its run recorded."""

    dataset_id: str
    path: Path
    texts: list[str]
    recorded_hash: str | None

    @property
    def changed(self) -> bool:
        return self.recorded_hash != content_hash(self.texts)

    def change_message(self) -> str:
        return (f"{self.path}: changed since the run (content hash {content_hash(self.texts)}, the run scored "
                f"{self.recorded_hash}); re-run `synque score` first")


def candidate_paths(run_info: dict) -> dict[str, Path]:
    """Candidate id → file, from the run's `candidates.path` (a relative path is read from the
    current folder, as the run itself read it)."""
    location = run_info.get("config", {}).get("candidates", {}).get("path")
    if not location:
        raise UserError("run.json: no config.candidates.path; it was not written by `synque score`")
    return dict(list_candidates(location))


def read_candidate(run_info: dict, dataset_id: str, path: Path) -> CandidateFile:
    """The candidate's texts as the run's config extracts them, and the hash the run recorded."""
    spec = run_info["config"]["candidates"]["text"]
    recorded = run_info.get("content_hashes", {}).get("candidates", {}).get(dataset_id)
    return CandidateFile(dataset_id, path, read_texts(path, spec), recorded)
