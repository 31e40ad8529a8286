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
    assert summary["by"] == "mdm" and summary["drop_rows"] == [] and summary["dedupe"] is False
    assert summary["complete"] is True and summary["files"] == [c["file"] for c in summary["chosen"]]
    assert sorted(c["file"] for c in summary["chosen"]) == sorted(p.name for p in scored_run.candidates.iterdir())


def test_drop_rule_removes_rows_flagged_under_any_seed(scored_run, capsys, tmp_path):
    out = tmp_path / "best"
    rankings = pl.read_parquet(scored_run.output / "rankings.parquet").filter(pl.col("proxy") == "ensemble")
    best = rankings.sort(["rank", "dataset_id"])["dataset_id"].head(2).to_list()
    rows = pl.read_parquet(scored_run.output / "row_scores.parquet")
    # p_synthetic is balanced (½ = no evidence): a threshold the best two's rows straddle, so that some are flagged.
    # Rows outside U_r's reach read exactly 1 (PAD's gate), so the threshold is taken among the others.
    worst_of_best = rows.filter(pl.col("dataset_id").is_in(best)).group_by("dataset_id", "row_index").agg(
        pl.col("p_synthetic").max())["p_synthetic"]
    threshold = round(float(worst_of_best.filter(worst_of_best < 1.0).quantile(0.8)), 4)
    assert 0.0 < threshold < 1.0 and (worst_of_best > threshold).any() and (worst_of_best <= threshold).any()
    code, _, err = select(capsys, scored_run.output, "--by", "ensemble", "--top", "2", "--out", str(out),
                          "--drop-rows", f"p_synthetic>{threshold}")
    assert code == 0, err
    summary = json.loads((out / "selection.json").read_text())
    assert [c["dataset_id"] for c in summary["chosen"]] == best
    assert summary["drop_rows"][0]["rule"] == f"p_synthetic>{threshold}"
    assert "under any seed" in summary["drop_rows"][0]["meaning"]
    for chosen in summary["chosen"]:
        mine = rows.filter(pl.col("dataset_id") == chosen["dataset_id"])
        worst = mine.group_by("row_index").agg(pl.col("p_synthetic").max(), pl.col("text_hash").first())
        flagged = set(worst.filter(pl.col("p_synthetic") > threshold)["row_index"])
        assert set(chosen["dropped_row_indices"]) == flagged
        kept = records(out / chosen["file"])
        assert len(kept) == chosen["rows_out"] == chosen["rows_in"] - len(flagged)
        keep_hashes = set(worst.filter(pl.col("p_synthetic") <= threshold)["text_hash"])
        assert set(row_hashes([r["text"] for r in kept])) == keep_hashes
    assert any(c["rows_dropped"] for c in summary["chosen"]), "the threshold should flag some rows"


@pytest.mark.parametrize("text, expected", [("p_synthetic>0.9", ("p_synthetic", ">", 0.9)),
                                            (" nearest_real_distance < 1e-1 ", ("nearest_real_distance", "<", 0.1)),
                                            ("lens_p_real<.2", ("lens_p_real", "<", 0.2)),
                                            ("p_synthetic>=0.9", ("p_synthetic", ">=", 0.9)),
                                            ("text_chars <= 10", ("text_chars", "<=", 10.0)),
                                            (" copies_real ", ("copies_real", None, None))])
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
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "p_synthetic=>0.9", *base],
           "--drop-rows 'p_synthetic=>0.9': expected SIGNAL>VALUE, SIGNAL>=VALUE, SIGNAL<VALUE, SIGNAL<=VALUE or "
           "a yes/no SIGNAL alone, e.g. p_synthetic>0.9", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "loss>1", *base],
           f"--drop-rows: unknown signal 'loss' ({folder}/row_scores.parquet has: p_synthetic, nearest_real_distance, "
           "copies_real, copies_eval, text_chars)", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "p_synthetic>0.5",
                         "--drop-rows", "duplicate_group", *base],
           "--drop-rows 'duplicate_group': duplicate_group is a group id, not a signal; use --dedupe to keep one "
           "row per near-duplicate group", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "copies_real>0", *base],
           "--drop-rows 'copies_real>0': copies_real is yes/no; name it alone (--drop-rows copies_real) to drop "
           "the rows where it is true", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--drop-rows", "p_synthetic", *base],
           "--drop-rows 'p_synthetic': p_synthetic is a number; give a threshold, e.g. 'p_synthetic>X' "
           "(or >=, <, <=)", out)
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(capsys, run, ["--by", "pad", "--top", "1", *base],
           f"{out}: exists and is not empty; choose a new --out folder, or pass --overwrite to replace the "
           "selection there", out)
    _fails(capsys, run, ["--by", "pad", "--top", "1", "--overwrite", *base],
           f"{out}: holds files but no readable selection.json; --overwrite only replaces an earlier "
           "`synque select` output (remove the folder yourself)", out)
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


def _ranked(run, by):
    """(dataset_id, rank) by `by`, best first, ties by id, as select takes them."""
    table = pl.read_parquet(run / "rankings.parquet").filter(pl.col("proxy") == by).sort(["rank", "dataset_id"])
    return list(zip(table["dataset_id"], table["rank"], strict=True))


RULES = [("copies_real", lambda r: r["copies_real"]), ("text_chars<45", lambda r: r["text_chars"] < 45),
         ("p_synthetic>=0.7", lambda r: r["p_synthetic"] >= 0.7)]  # balanced p: the degraded rows read .7-.8


def _expected_drops(rows):
    """What RULES, in order, then --dedupe drop from one candidate's rows, each counting only the
    rows the earlier ones left (written out here independently of selection.py)."""
    per_row = rows.group_by("row_index").agg(pl.col("p_synthetic").max(), pl.col("copies_real").any(),
                                             pl.col("text_chars").min(), pl.col("duplicate_group").first())
    per_row = {r["row_index"]: r for r in per_row.iter_rows(named=True)}
    left = set(per_row)
    by = {}
    for name, hit in RULES:
        by[name] = {i for i in left if hit(per_row[i])}
        left -= by[name]
    first = {}
    for i in sorted(left):
        group = per_row[i]["duplicate_group"]
        if group >= 0:
            first.setdefault(group, i)
    by["dedupe"] = {i for i in left if per_row[i]["duplicate_group"] >= 0 and first[per_row[i]["duplicate_group"]] != i}
    return by


def test_each_rule_says_what_it_dropped_and_dedupe_keeps_one_row_per_group(scored_run, capsys, tmp_path):
    run, out = scored_run.output, tmp_path / "sel"
    rules = [arg for name, _ in RULES for arg in ("--drop-rows", name)]
    code, printed, err = select(capsys, run, "--by", "mdm", "--top", "4", "--out", str(out), *rules, "--dedupe")
    assert code == 0, err
    rows = pl.read_parquet(run / "row_scores.parquet")
    summary = json.loads((out / "selection.json").read_text())
    assert [r["rule"] for r in summary["drop_rows"]] == [name for name, _ in RULES]
    assert summary["dedupe"] is True
    lines = printed.splitlines()
    totals = dict.fromkeys([*(name for name, _ in RULES), "dedupe"], 0)
    for (dataset_id, rank), chosen, line in zip(_ranked(run, "mdm"), summary["chosen"], lines, strict=False):
        expected = _expected_drops(rows.filter(pl.col("dataset_id") == dataset_id))
        dropped = set().union(*expected.values())
        counts = ", ".join(f"{len(v)} by {k}" for k, v in expected.items())
        assert line == (f"{dataset_id}: rank {rank} by mdm, {40 - len(dropped)} of 40 rows kept (dropped {counts}) "
                        f"-> {out}/{chosen['file']}")
        assert chosen["dropped_by"] == {k: len(v) for k, v in expected.items()}
        assert chosen["dropped_row_indices"] == sorted(dropped)
        kept = records(out / chosen["file"])
        groups = rows.filter((pl.col("dataset_id") == dataset_id) & (pl.col("seed") == 1))
        group_of = dict(zip(groups["text_hash"], groups["duplicate_group"], strict=False))
        kept_groups = [group_of[h] for h in row_hashes([r["text"] for r in kept]) if group_of[h] >= 0]
        assert len(kept_groups) == len(set(kept_groups)), "one row per near-duplicate group"
        for k, v in expected.items():
            totals[k] += len(v)
    assert len(lines) == 5 and all(totals.values()), totals  # every rule had rows to drop in this run


def test_a_rule_set_that_empties_a_candidate_is_refused_unless_allowed(scored_run, capsys, tmp_path):
    run, out = scored_run.output, tmp_path / "sel"
    (best, rank), (second, rank2) = _ranked(run, "mdm")[:2]
    copies = pl.read_parquet(run / "row_scores.parquet").filter(
        (pl.col("dataset_id") == best) & pl.col("copies_real")).get_column("row_index").n_unique()
    args = ["--by", "mdm", "--top", "2", "--out", str(out),
            "--drop-rows", "copies_real", "--drop-rows", "text_chars>=0"]
    _fails(capsys, run, args, f"{best}: the rules drop all 40 of its rows (copies_real: {copies}, text_chars>=0: "
           f"{40 - copies}); loosen them, or pass --allow-empty to skip such a candidate", out)
    assert not out.exists()
    code, printed, err = select(capsys, run, *args, "--allow-empty")
    assert code == 0, err
    assert [p.name for p in out.iterdir()] == ["selection.json"]  # never an empty candidate file
    assert printed.splitlines()[0] == (f"{best}: rank {rank} by mdm, all 40 rows dropped ({copies} by "
                                       f"copies_real, {40 - copies} by text_chars>=0); no file written "
                                       "(--allow-empty)")
    assert printed.splitlines()[1].startswith(f"{second}: rank {rank2} by mdm, all 40 rows dropped (")
    summary = json.loads((out / "selection.json").read_text())
    assert [(c["file"], c["rows_out"]) for c in summary["chosen"]] == [(None, 0), (None, 0)]
    assert summary["files"] == [] and summary["allow_empty"] is True


def test_overwrite_replaces_only_the_files_of_the_earlier_selection(scored_run, capsys, tmp_path):
    run, out = scored_run.output, tmp_path / "sel"
    ranked = [d for d, _ in _ranked(run, "mdm")]
    suffix = {p.stem: p.name for p in scored_run.candidates.iterdir()}
    assert select(capsys, run, "--by", "mdm", "--top", "3", "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    code, printed, err = select(capsys, run, "--by", "mdm", "--top", "1", "--out", str(out), "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", "selection.json", suffix[ranked[0]]])
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "selection.json").read_text())["files"] == [suffix[ranked[0]]]
    # A file of the new selection's name that no selection wrote is the user's: refused, nothing touched.
    (out / suffix[ranked[1]]).write_text("not from a selection")
    _, _, err = select(capsys, run, "--by", "mdm", "--top", "2", "--out", str(out), "--overwrite")
    assert err == (f"error: {out}/{suffix[ranked[1]]}: exists and no earlier selection wrote it; --overwrite "
                   "replaces only the files selection.json lists\n")
    assert (out / suffix[ranked[1]]).read_text() == "not from a selection"


def test_an_overwrite_cut_short_is_finished_by_the_next_one(scored_run, capsys, tmp_path, monkeypatch):
    import synque_ray
    from synque_ray.storage import Store

    run, out = synque_ray.open_run(scored_run.output), tmp_path / "sel"
    ranked = [d for d, _ in _ranked(scored_run.output, "mdm")]
    suffix = {p.stem: p.name for p in scored_run.candidates.iterdir()}
    run.select("mdm", 2, str(out))
    write = Store.write_bytes

    def fail_on_the_last(self, relative, payload):
        if relative == suffix[ranked[3]]:
            raise OSError("disk full")
        write(self, relative, payload)

    monkeypatch.setattr(Store, "write_bytes", fail_on_the_last)
    with pytest.raises(OSError):  # the next selection (4 files) fails at its last file
        run.select("mdm", 4, str(out), overwrite=True)
    record = json.loads((out / "selection.json").read_text())
    on_disk = {p.name for p in out.iterdir()} - {"selection.json"}
    assert record["complete"] is False and on_disk <= set(record["files"])
    monkeypatch.setattr(Store, "write_bytes", write)
    run.select("mdm", 1, str(out), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(["selection.json", suffix[ranked[0]]])
    assert json.loads((out / "selection.json").read_text())["complete"] is True


def test_dedupe_keeps_the_first_row_the_rules_leave_in_each_group():
    from synque_ray.selection import Rules

    # rows 2, 5, 7 form group 2; rows 3, 4 group 3; row 6 is alone; two seeds, one of which flags row 2
    rows = pl.DataFrame({"row_index": [0, 2, 3, 4, 5, 6, 7] * 2, "seed": [1] * 7 + [2] * 7,
                         "duplicate_group": [-1, 2, 3, 3, 2, -1, 2] * 2,
                         "p_synthetic": [0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1] + [0.1, 0.95, 0.1, 0.1, 0.1, 0.1, 0.1],
                         "copies_real": [False] * 6 + [None] + [False] * 5 + [True, False]})
    rules = Rules((parse_drop_rule("p_synthetic>0.9"), parse_drop_rule("copies_real")), dedupe=True)
    # row 2 goes by p_synthetic (seed 2), row 6 by copies_real (seed 2; row 7's null under seed 1
    # flags nothing); then group 2 keeps row 5 and drops 7, group 3 keeps row 3 and drops 4
    assert rules.dropped_by(rows) == {"p_synthetic>0.9": [2], "copies_real": [6], "dedupe": [4, 7]}
    assert Rules((parse_drop_rule("p_synthetic>=0.2"), parse_drop_rule("p_synthetic>=0.2"))).dropped_by(rows) == {
        "p_synthetic>=0.2": [2]}
