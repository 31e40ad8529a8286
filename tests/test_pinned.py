"""Inputs pinned for a run (SPEC §10b), skipped files said (issue 14 §1, §7)."""

import json
import os
from pathlib import Path

import pytest

from synque_ray.reading import InputChanged, RowSet, content_hash, scan_candidates


def write_rows(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_texts_are_the_hashed_rows_or_an_error(tmp_path):
    path = tmp_path / "a.jsonl"
    write_rows(path, ["one", "two", "three"])
    rowset = RowSet("a", path=path, spec="text")
    assert rowset.texts == ["one", "two", "three"] and rowset.content_hash == content_hash(rowset.texts)
    write_rows(path, ["one", "two", "THREE"])  # same size, other rows
    with pytest.raises(InputChanged) as err:
        rowset.texts
    assert str(err.value) == f"{path} changed during the run; re-run to score it" and err.value.name == "a"
    path.unlink()
    with pytest.raises(InputChanged, match=r"changed during the run \(file not found\); re-run to score it"):
        rowset.texts


def test_symlinks_are_followed_and_every_skipped_entry_is_named(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_rows(outside / "linked.jsonl", ["x"])
    folder = tmp_path / "candidates"
    folder.mkdir()
    write_rows(folder / "plain.jsonl", ["y"])
    (folder / "linked.jsonl").symlink_to(outside / "linked.jsonl")
    (folder / "gone.jsonl").symlink_to(tmp_path / "missing.jsonl")
    (folder / "notes.txt").write_text("not a candidate")
    (folder / "sub").mkdir()
    found, skipped = scan_candidates(str(folder))
    assert found == [("linked", folder / "linked.jsonl"), ("plain", folder / "plain.jsonl")]
    assert skipped == {
        str(folder / "gone.jsonl"): f"dangling symlink (points to {tmp_path / 'missing.jsonl'})",
        str(folder / "notes.txt"): "unsupported file type '.txt' (use .json, .jsonl, .parquet, .csv)",
        str(folder / "sub"): "a folder, not a file",
    }
    found, skipped = scan_candidates(str(folder / "*.jsonl"))  # a glob: the same rule for links
    assert [name for name, _ in found] == ["linked", "plain"] and list(skipped) == [str(folder / "gone.jsonl")]
