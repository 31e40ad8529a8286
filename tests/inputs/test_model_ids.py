"""A local model's id hashes its files; the hash of a file is reused while its size, mtime,
ctime and inode are unchanged, and no longer: weights rewritten in place are noticed."""

from __future__ import annotations

import os
import time

from synque_ray import models


def test_weights_rewritten_in_place_with_their_size_and_mtime_kept_are_hashed_again(tmp_path, monkeypatch):
    folder, cache = tmp_path / "model", tmp_path / "hashes.json"
    folder.mkdir()
    weights = folder / "weights.bin"
    weights.write_bytes(b"A" * 64)
    (folder / "config.json").write_text("{}")
    before = models.content_digest(folder, cache)
    hashed: list[str] = []
    real_sha = models._file_sha256
    monkeypatch.setattr(models, "_file_sha256", lambda path: hashed.append(path.name) or real_sha(path))
    assert models.content_digest(folder, cache) == before and hashed == []  # unchanged: a stat per file
    stat = weights.stat()
    time.sleep(0.05)  # the kernel's file clock ticks every few ms: let the ctime move past the first write's
    weights.write_bytes(b"B" * 64)  # the same size
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the mtime set back
    assert weights.stat().st_size == stat.st_size and weights.stat().st_mtime_ns == stat.st_mtime_ns
    after = models.content_digest(folder, cache)
    assert hashed == ["weights.bin"] and after != before
    assert after == models.content_digest(folder, tmp_path / "fresh.json")  # what hashing everything anew gives
