"""`synque select` on a small real run: formats round-trip, the drop rule, and bad input
(one line on stderr, exit 2, nothing written)."""

import json
import shutil
import subprocess
import sys

import polars as pl
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from synque_ray import cli
from synque_ray.reading import row_hashes
from synque_ray.runfiles import published
from synque_ray.selection import parse_drop_rule

pytestmark = pytest.mark.ray


def select(capsys, run_dir, *args):
    code = cli.main(["select", str(run_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(path):
    """A file's records as the reader of its format sees them (field values, in order)."""
    suffix = path.suffix
    if suffix == ".json":
        return json.loads(path.read_text())
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return pa_csv.read_csv(path).to_pylist()


def test_every_format_round_trips_unchanged(scored_run, capsys, tmp_path):
    out = tmp_path / "all"
    code, printed, err = select(capsys, scored_run.output, "--by", "mdm", "--top", "4", "--out", str(out))
    assert code == 0, err
    assert printed.endswith(f"written: {out}/selection.json\n")
    for source in sorted(scored_run.candidates.iterdir()):
        copy = out / source.name
        assert records(copy) == records(source), source.suffix
        if source.suffix == ".parquet":
            assert pq.read_schema(copy).equals(pq.read_schema(source))
        if source.suffix == ".jsonl":
            assert copy.read_bytes() == source.read_bytes()  # lines copied verbatim
    summary = json.loads((out / "selection.json").read_text())
    assert summary["by"] == "mdm" and summary["drop_rows"] is None
    assert sorted(c["file"] for c in summary["chosen"]) == sorted(p.name for p in scored_run.candidates.iterdir())


def test_drop_rule_removes_rows_flagged_under_any_seed(scored_run, capsys, tmp_path):
    out = tmp_path / "best"
    code, _, err = select(capsys, scored_run.output, "--by", "ensemble", "--top", "2", "--out", str(out),
                          "--drop-rows", "p_synthetic>0.7")
    assert code == 0, err
    rankings = pl.read_parquet(scored_run.output / "rankings.parquet").filter(pl.col("proxy") == "ensemble")
    best = rankings.sort(["rank", "dataset_id"])["dataset_id"].head(2).to_list()
    rows = pl.read_parquet(scored_run.output / "row_scores.parquet")
    summary = json.loads((out / "selection.json").read_text())
    assert [c["dataset_id"] for c in summary["chosen"]] == best
    assert "under any seed" in summary["drop_rows"]["rule"]
    for chosen in summary["chosen"]:
        mine = rows.filter(pl.col("dataset_id") == chosen["dataset_id"])
        worst = mine.group_by("row_index").agg(pl.col("p_synthetic").max(), pl.col("text_hash").first())
        flagged = set(worst.filter(pl.col("p_synthetic") > 0.7)["row_index"])
        assert set(chosen["dropped_row_indices"]) == flagged
        kept = records(out / chosen["file"])
        assert len(kept) == chosen["rows_out"] == chosen["rows_in"] - len(flagged)
        keep_hashes = set(worst.filter(pl.col("p_synthetic") <= 0.7)["text_hash"])
        assert set(row_hashes([r["text"] for r in kept])) == keep_hashes
    assert any(c["rows_dropped"] for c in summary["chosen"]), "the threshold should flag some rows"


@pytest.mark.parametrize("text, expected", [("p_synthetic>0.9", ("p_synthetic", ">", 0.9)),
                                            (" nearest_real_distance < 1e-1 ", ("nearest_real_distance", "<", 0.1)),
                                            ("lens_p_real<.2", ("lens_p_real", "<", 0.2))])
def test_drop_rules_parse(text, expected):
    rule = parse_drop_rule(text)
    assert (rule.signal, rule.op, rule.value) == expected


def _fails(capsys, run_dir, args, message, out):
    code, printed, err = select(capsys, run_dir, *args)
    assert (code, err) == (2, f"error: {message}\n")
    assert "Traceback" not in printed + err
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_input_is_one_line_and_writes_nothing(scored_run, capsys, tmp_path):
    run, out = scored_run.output, tmp_path / "sel"
    folder = published(str(run)).display()  # the published set select reads: runs/<LATEST>/
    base = ["--out", str(out)]
    _fails(capsys, run, ["--by", "nope", "--top", "1", *base],
           f"--by nope: no such proxy in {folder}/rankings.parquet (proxies: ensemble, mauve, mdm, mmd, pad)", out)
    _fails(capsys, run, ["--by", "pad", "--top", "9", *base],
           "--top 9: must be between 1 and the 4 candidates ranked by pad", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "p_synthetic>=0.9", *base],
           "--drop-rows 'p_synthetic>=0.9': expected SIGNAL>VALUE or SIGNAL<VALUE, e.g. p_synthetic>0.9", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "loss>1", *base],
           f"--drop-rows: unknown signal 'loss' ({folder}/row_scores.parquet has: p_synthetic, nearest_real_distance)",
           out)
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(capsys, run, ["--by", "pad", "--top", "1", *base],
           f"{out}: exists and is not empty; choose a new --out folder", out)
    assert (out / "keep.txt").read_text() == "mine"


def test_a_run_without_row_scores_cannot_drop_rows(scored_run, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(scored_run.output, run, ignore=shutil.ignore_patterns("cache", "results", "runs"))
    (run / "row_scores.parquet").unlink()
    out = tmp_path / "sel"
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "p_synthetic>0.9", "--out", str(out)],
           f"{run}/row_scores.parquet: not found; this run has no row scores to drop rows by (re-run `synque score`)",
           out)


def test_a_candidate_changed_since_the_run_is_refused(scored_run, capsys, tmp_path):
    data = tmp_path / "cands"
    shutil.copytree(scored_run.candidates, data)
    run = tmp_path / "run"
    shutil.copytree(scored_run.output, run, ignore=shutil.ignore_patterns("cache", "results", "runs"))
    info = json.loads((run / "run.json").read_text())
    info["config"]["candidates"]["path"] = str(data)
    (run / "run.json").write_text(json.dumps(info))
    jsonl = next(p for p in data.iterdir() if p.suffix == ".jsonl")
    jsonl.write_text(jsonl.read_text() + '{"text": "a row added later"}\n')
    ranked = pl.read_parquet(run / "rankings.parquet").filter(pl.col("proxy") == "mdm")
    top = ranked.filter(pl.col("dataset_id") == jsonl.stem)["rank"].item()  # so that it is among those chosen
    code, _, err = select(capsys, run, "--by", "mdm", "--top", str(top), "--out", str(tmp_path / "sel"))
    assert code == 2 and err.startswith(f"error: {jsonl}: changed since the run (content hash ")
    assert err.endswith(f"the run scored {info['content_hashes']['candidates'][jsonl.stem]}); "
                        "re-run `synque score` first\n")
    assert not (tmp_path / "sel").exists()


def test_select_runs_as_a_command(scored_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "synque_ray", "select", str(scored_run.output), "--by", "ensemble",
                           "--top", "1", "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "one" / "selection.json").read_text())["chosen"]) == 1
    again = subprocess.run([sys.executable, "-m", "synque_ray", "select", str(scored_run.output), "--by", "ensemble",
                            "--top", "1", "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
