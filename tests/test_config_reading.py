"""Config validation and file reading, with the exact one-line messages of SPEC §10."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synque_ray.config import load_config, parse_config
from synque_ray.errors import UserError
from synque_ray.reading import content_hash, list_candidates, read_texts, sample_pool

BASE = {
    "name": "t",
    "output": "out",
    "real": {"path": "pool.json", "text": "text"},
    "candidates": {"path": "cands", "text": "text"},
}


def test_defaults_follow_the_spec():
    config = parse_config(BASE)
    assert config.mdm.k == 3
    assert (config.mmd.kernel, config.mmd.degree, config.mmd.coef0) == ("polynomial", 3, 1.0)
    assert (config.pad.classifier, config.pad.holdout) == ("xgboost", 0.2)
    assert config.mauve.scaling_factor == 5
    assert config.cache_location == "out/cache"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": 1}, "cfg.yaml: unknown key 'colour'"),
        ({"mdm": {"k": 3, "kk": 2}}, "cfg.yaml: unknown key 'mdm.kk' (did you mean 'k'?)"),
        ({"real": {"text": "t"}}, "cfg.yaml: real: give exactly one of real.path (a pool) or real.samples (one file per seed)"),
        ({"real": {"samples": ["a.json"], "seeds": [1, 2], "text": "t"}},
         "cfg.yaml: real: real.samples has 1 files but real.seeds has 2 seeds; they are paired one to one"),
        ({"mmd": {"kernel": "cosine"}},
         "cfg.yaml: mmd.kernel: Input should be 'polynomial', 'rbf', 'laplacian', 'linear' or 'sigmoid'"),
        ({"proxies": ["mdm", "mdm"]}, "cfg.yaml: proxies lists a proxy twice"),
        ({"name": None}, "cfg.yaml: name: Input should be a valid string"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(change, message):
    with pytest.raises(UserError) as caught:
        parse_config({**BASE, **change}, "cfg.yaml")
    assert str(caught.value) == message


def test_missing_key_and_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noutput: o\nreal: {path: p, text: t}\n")
    with pytest.raises(UserError, match=f"^{path}: missing key 'candidates'$"):
        load_config(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=f"^{path}: line 2 is not valid YAML$"):
        load_config(path)
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def write_all_formats(folder, records):
    folder.mkdir(exist_ok=True)
    (folder / "a.json").write_text(json.dumps(records))
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.Table.from_pylist(records), folder / "c.parquet")
    (folder / "d.csv").write_text("q,e,label\n" + "".join(f"{r['q']},{r['e']},{r['label']}\n" for r in records))


def test_every_format_reads_the_same_texts_and_templates(tmp_path):
    records = [{"q": "how many", "e": "rows", "label": 1}, {"q": "what", "e": "is it", "label": 0}]
    write_all_formats(tmp_path / "cands", records)
    found = list_candidates(str(tmp_path / "cands"))
    assert [name for name, _ in found] == ["a", "b", "c", "d"]
    for _, path in found:
        assert read_texts(path, "q") == ["how many", "what"]
        assert read_texts(path, "{q} | {e}") == ["how many | rows", "what | is it"]
    assert [n for n, _ in list_candidates(str(tmp_path / "cands" / "*.json*"))] == ["a", "b"]


@pytest.mark.parametrize(
    "name, content, spec, message",
    [
        ("e.json", "", "text", "{p}: file is empty"),
        ("e.json", "[]", "text", "{p}: file has no rows"),
        ("e.json", "{\"a\": 1}", "text", "{p}: entry 'a' is neither text nor an object (got int); a .json file "
         "holds a list of objects or one object mapping ids to texts or objects"),
        ("e.json", "3", "text", "{p}: expected a JSON list of objects or an object mapping ids to texts or objects"),
        ("e.json", "[{\"text\": \"x\"}, {\"other\": \"y\"}]", "text", "{p}: row 2 has no field 'text'"),
        ("e.json", "[{\"text\": 3}]", "text", "{p}: row 1 field 'text' is not text (got int)"),
        ("e.json", "[{\"text\": null}]", "text", "{p}: row 1 field 'text' is not text (got null)"),
        ("e.json", "[{\"a\": \"x\"}]", "{a} {b}", "{p}: row 1 has no field 'b'"),
        ("e.jsonl", "{\"text\": \"x\"}\nnot json\n", "text", "{p}: line 2 is not valid JSON"),
        ("e.json", "[1, 2]", "text", "{p}: row 1 is not an object"),
        ("e.json", "[{\"text\": \"x\"", "text", "{p}: not valid JSON (JSONDecodeError)"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, name, content, spec, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError) as caught:
        read_texts(path, spec)
    assert str(caught.value) == message.format(p=path)


def test_missing_file_and_duplicate_ids(tmp_path):
    with pytest.raises(UserError, match="gone.json: file not found"):
        read_texts(tmp_path / "gone.json", "text")
    folder = tmp_path / "dups"
    folder.mkdir()
    (folder / "x.json").write_text("[]")
    (folder / "x.csv").write_text("text\na\n")
    with pytest.raises(UserError) as caught:
        list_candidates(str(folder))
    assert str(caught.value) == f"duplicate candidate id 'x': {folder / 'x.csv'} and {folder / 'x.json'}"
    with pytest.raises(UserError, match="nowhere: candidates folder or glob not found"):
        list_candidates(str(tmp_path / "nowhere"))


def test_pool_sampling_is_reproducible_and_bounded():
    pool = [f"row {i}" for i in range(50)]
    a, b, c = sample_pool(pool, 10, 1, "p"), sample_pool(pool, 10, 1, "p"), sample_pool(pool, 10, 2, "p")
    assert a == b and a != c and len(set(a)) == 10
    with pytest.raises(UserError, match="^p: real.sample_size 51 exceeds the pool's 50 rows$"):
        sample_pool(pool, 51, 1, "p")


def test_content_hash_separates_rows():
    assert content_hash(["ab", "c"]) != content_hash(["a", "bc"])
    assert content_hash(["x"]) == content_hash(["x"])
