"""Config validation and file reading, with their exact one-line messages."""

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
    assert (config.pad.classifier, config.pad.folds, config.pad.balanced) == ("logistic", 5, True)
    assert config.mauve.scaling_factor == 5
    assert config.cache_location == "out/cache"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": 1}, "cfg.yaml: unknown key 'colour'"),
        ({"mdm": {"k": 3, "kk": 2}}, "cfg.yaml: unknown key 'mdm.kk' (did you mean 'k'?)"),
        ({"real": {"text": "t"}},
         "cfg.yaml: real: give exactly one of real.path (a pool) or real.samples (one file per seed)"),
        ({"real": {"samples": ["a.json"], "seeds": [1, 2], "text": "t"}},
         "cfg.yaml: real: real.samples has 1 files but real.seeds has 2 seeds; they are paired one to one"),
        ({"mmd": {"kernel": "cosine"}},
         "cfg.yaml: mmd.kernel: Input should be 'polynomial', 'rbf', 'laplacian', 'linear' or 'sigmoid'"),
        ({"proxies": ["mdm", "mdm"]}, "cfg.yaml: proxies lists a proxy twice"),
        ({"name": None}, "cfg.yaml: name: Input should be a valid string"),
        ({"real": {"path": "p", "text": "t", "sample_size": True}}, "cfg.yaml: real.sample_size: true is not a number"),
        ({"mdm": {"k": False}}, "cfg.yaml: mdm.k: false is not a number"),
        ({"lens": {"gpu_memory_utilization": True}}, "cfg.yaml: lens.gpu_memory_utilization: true is not a number"),
        ({"lens": {"task": "poetry"}}, "cfg.yaml: lens.task: unknown task 'poetry' (known: sentiment, text2sql, web, "
                                       "generic)"),
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
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: line 1 is not valid YAML: expected ',' or ']', but got '<stream end>' "
                                 "(while parsing a flow sequence)")
    path.write_text("name: x\nreal:\n  path: p\n text: t\n")  # a block's context names its start, far above
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: line 4 is not valid YAML: expected <block end>, but found "
                                 "'<block mapping start>' (while parsing a block mapping from line 1)")
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_merge_keys_may_be_overridden_but_plain_keys_not_repeated(tmp_path):
    """`<<: *base` then a key of the base: YAML's way to override, not a repeat."""
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {path: p, text: t}\nname: x\noutput: o\nreal: {<<: *b, text: u}\n"
                    "candidates: {<<: *b}\n")
    with pytest.raises(UserError) as caught:  # read past the YAML: the unknown key 'base' is the first error
        load_config(path)
    assert str(caught.value) == f"{path}: unknown key 'base'"
    path.write_text("name: x\nreal: {path: p, text: t, text: u}\n")
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: line 2: key 'text' is given twice in one mapping (first on line 2); keep one"


def test_the_edges_of_what_is_accepted():
    """The bounds themselves are accepted: seeds 0 and 2**32 - 1, 10,000 resamples, a width of 1,000."""
    config = parse_config({**BASE, "real": {"path": "p", "text": "{text:>1000}", "seeds": [0, 2**32 - 1]},
                           "ranking": {"resamples": 10_000}, "pad": {"balanced": False}, "allow_partial": True,
                           "candidates": {"path": "c", "text": "{n:,.2f} {t:*^20} {u:.1000}"}})
    assert (config.real.seeds, config.ranking.resamples) == ([0, 2**32 - 1], 10_000)
    assert (config.pad.balanced, config.allow_partial) == (False, True)  # yes/no keys take yes/no


def test_the_cache_goes_under_a_uri_output_before_its_query():
    config = parse_config({**BASE, "output": "s3://bucket/out/?endpoint_override=host:9000&scheme=http"})
    assert config.cache_location == "s3://bucket/out/cache?endpoint_override=host:9000&scheme=http"


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
        ("e.json", "[{\"text\": \"x\"}, {\"other\": \"y\"}]", "text",
         "{p}: row 2 has no field 'text' (its fields: 'other')"),
        ("e.json", "[{\"text\": 3}]", "text", "{p}: row 1 field 'text' is not text (got int)"),
        ("e.json", "[{\"text\": null}]", "text", "{p}: row 1 field 'text' is not text (got null)"),
        ("e.json", "[{\"a\": \"x\"}]", "{a} {b}", "{p}: row 1 has no field 'b' (its fields: 'a')"),
        ("e.json", "[{}]", "text", "{p}: row 1 has no field 'text' (its fields: none)"),
        ("e.json", json.dumps([{f"f{i}": "x" for i in range(14)}]), "text", "{p}: row 1 has no field 'text' (its "
         "fields: 'f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9', 'f10', 'f11', and 2 more)"),
        ("e.csv", "text,text\na,b\n", "{text}!", "{p}: 2 columns are named 'text' (columns 1, 2); rename all but one"),
        ("e.json", '[{"text": "a", "text": "b"}]', "text",
         "{p}: row 1 gives the key 'text' 2 times (keys 1, 2); keep one"),
        ("e.jsonl", '{"text": "a"}\n{"text": "a", "id": 2, "text": "b"}\n', "{text}", "{p}: row 2 gives the key "
         "'text' 2 times (keys 1, 3); keep one"),
        ("e.json", '{"a": "x", "a": "y"}', "text", "{p}: entry 'a' is given 2 times; give each id once"),
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


# ---------------------------------------------------------------- valid input once refused


def test_csv_quoted_text_may_hold_newlines(tmp_path):
    """Past pyarrow's 1 MB block a quoted newline used to split a row ("Expected 2 columns, got 1")."""
    path = tmp_path / "c.csv"
    texts = [f"review {i}\n" + "\n".join(["a line of a long, multi-line review"] * 9) for i in range(5000)]
    path.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(texts)))
    assert path.stat().st_size > 1 << 20
    assert read_texts(path, "text") == texts


def test_jsonl_string_may_hold_a_raw_line_separator(tmp_path):
    path = tmp_path / "s.jsonl"
    texts = ["before\u2028after", "next\u2029para", "tab\x0bvertical", "plain"]
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    assert read_texts(path, "text") == texts


def test_csv_text_of_digits_is_text(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("text,stars\n007,4\n12,5\n3.50,1\n")
    assert read_texts(path, "text") == ["007", "12", "3.50"]
    assert read_texts(path, "{text} ({stars} stars)") == ["007 (4 stars)", "12 (5 stars)", "3.50 (1 stars)"]


def test_a_bad_byte_names_its_csv_row_and_line(tmp_path):
    path = tmp_path / "b.csv"
    rows = [b"row %d,1\n" % i for i in range(1, 61)]
    rows[2] = b'"row 3\nspans two lines",1\n'  # one row on two lines: row 61 is line 63
    path.write_bytes(b"text,label\n" + b"".join(rows) + b"bad \xff byte,0\nlast,1\n")
    with pytest.raises(UserError) as caught:
        read_texts(path, "text")
    assert str(caught.value) == f"{path}: row 61 (line 63) is not UTF-8 text (byte 0xff)"
    path.write_bytes(b"te\xffxt,label\na,1\n")
    with pytest.raises(UserError) as caught:
        read_texts(path, "text")
    assert str(caught.value) == f"{path}: the header (line 1) is not UTF-8 text (byte 0xff)"
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xe9"}\n')
    with pytest.raises(UserError) as caught:
        read_texts(path, "text")
    assert str(caught.value) == f"{path}: line 2 is not UTF-8 text (byte 0xe9)"


def test_lone_surrogate_names_row_and_field(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "x\\udfff"}\n')
    with pytest.raises(UserError) as caught:
        read_texts(path, "text")
    assert str(caught.value) == (f"{path}: row 2 field 'text' holds a lone surrogate ('\\udfff'), which is not "
                                 "valid Unicode text")


# ---------------------------------------------------------------- a clean first screen


def test_template_formats_numbers_and_bools(tmp_path):
    records = [{"stars": 4, "score": 0.5, "ok": True, "text": "good"}, {"stars": 1, "score": 2.25, "ok": False,
                                                                        "text": "bad"}]
    for name in ("r.json", "r.parquet"):
        path = tmp_path / name
        if name.endswith(".json"):
            path.write_text(json.dumps(records))
        else:
            pq.write_table(pa.Table.from_pylist(records), path)
        assert read_texts(path, "{stars} stars: {text}") == ["4 stars: good", "1 stars: bad"]
        assert read_texts(path, "{score:.1f} {ok} {text!r}") == ["0.5 True 'good'", "2.2 False 'bad'"]
    path = tmp_path / "null.json"
    path.write_text(json.dumps([{"stars": 4, "text": "a"}, {"stars": None, "text": "b"}]))
    with pytest.raises(UserError) as caught:
        read_texts(path, "{stars} stars: {text}")
    assert str(caught.value) == f"{path}: row 2 field 'stars' is not text or a number (got null)"
    with pytest.raises(UserError) as caught:
        read_texts(path, "stars")  # a bare field name must still be text
    assert str(caught.value) == f"{path}: row 1 field 'stars' is not text (got int)"
    with pytest.raises(UserError) as caught:
        read_texts(path, "{text:d}")
    assert str(caught.value) == (f"{path}: row 1: template '{{text:d}}' cannot format its fields (Unknown format "
                                 "code 'd' for object of type 'str')")


def test_json_object_mapping_ids_to_texts_or_records(tmp_path):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"t1": "Find a recipe", "t2": "Book a flight"}))
    assert read_texts(path, "text") == ["Find a recipe", "Book a flight"]
    assert read_texts(path, "task") == ["Find a recipe", "Book a flight"]  # a bare text, whatever the field name
    with pytest.raises(UserError) as caught:
        read_texts(path, "{task} now")
    assert str(caught.value) == (f"{path}: row 1 is a bare text (an id → text entry), so the template '{{task}} "
                                 "now' has no fields to fill; give a field name instead")
    path.write_text(json.dumps({"a": {"q": "how", "n": 2}, "b": {"q": "why", "n": 3}}))
    assert read_texts(path, "q") == ["how", "why"]
    assert read_texts(path, "{q} x{n}") == ["how x2", "why x3"]
    path.write_text(json.dumps({"a": "text", "b": {"q": "why"}}))
    assert read_texts(path, "q") == ["text", "why"]


def test_unknown_key_suggests_the_nearest_valid_one():
    cases = [({"candidates": {"path": "c", "text": "t", "sampel_size": 5}},
              "cfg.yaml: unknown key 'candidates.sampel_size' (did you mean 'sample_size'?)"),
             ({"ouptut": "o"}, "cfg.yaml: unknown key 'ouptut' (did you mean 'output'?)"),
             ({"lens": {"candidates": {"top": 2, "bye": "mdm"}}},
              "cfg.yaml: unknown key 'lens.candidates.bye' (did you mean 'by'?)"),
             ({"ranking": {"zebra": 1}}, "cfg.yaml: unknown key 'ranking.zebra'")]
    for change, message in cases:
        with pytest.raises(UserError) as caught:
            parse_config({**BASE, **change}, "cfg.yaml")
        assert str(caught.value) == message


def test_select_copies_the_rows_of_every_shape_the_reader_accepts(tmp_path):
    """`select` copies rows by the index the reader gave them: a .json id map keeps its ids, a
    .jsonl line holding U+2028 stays one row."""
    from synque_ray.selection import subset_bytes

    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"t1": "one", "t2": {"text": "two"}, "t3": "three"}))
    assert read_texts(path, "text") == ["one", "two", "three"]
    assert json.loads(subset_bytes(path, [0, 2], 3)) == {"t1": "one", "t3": "three"}
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a\u2028b"}\n{"text": "c"}\n', encoding="utf-8")
    assert subset_bytes(path, [1], len(read_texts(path, "text"))) == b'{"text": "c"}\n'


def test_every_registered_proxy_has_its_typed_config_section():
    """JobConfig's sections are written out (so a type checker sees them), not made from the registry:
    a proxy added to REGISTRY without its section, or with a section of another type, fails here."""
    from synque_ray.config import STAGE_PROXY_NAMES, JobConfig
    from synque_ray.proxies import REGISTRY

    fields = JobConfig.model_fields
    sections = {name: (fields[name].annotation, type(fields[name].default)) for name in REGISTRY if name in fields}
    assert sections == {name: (proxy.params, proxy.params) for name, proxy in REGISTRY.items()}
    # After every other key and in the registry's order, so that the first of several errors is the same one.
    assert list(fields)[-len(REGISTRY):] == list(REGISTRY)
    assert all(name in fields for name in STAGE_PROXY_NAMES)
    config = parse_config(BASE)
    assert [config.proxy_params(name) for name in REGISTRY] == [proxy.params() for proxy in REGISTRY.values()]
    assert config.proxy_params("perplexity") == config.perplexity


def test_the_demo_config_loads_before_its_data_is_written(tmp_path, monkeypatch):
    """`synque demo` writes its inputs after reading its config: their paths are checked only for a
    config whose inputs the user gives."""
    from synque_ray.cli import DEMO_CONFIG

    monkeypatch.chdir(tmp_path)
    assert load_config(DEMO_CONFIG, check_inputs=False).real.path == "demo-data/real/pool.jsonl"
    with pytest.raises(UserError) as caught:
        load_config(DEMO_CONFIG)
    assert str(caught.value) == f"{DEMO_CONFIG}: real.path: demo-data/real/pool.jsonl: file not found"


def test_a_repeated_name_the_text_does_not_read_is_no_error(tmp_path):
    """Spreadsheet exports repeat blank column names; a JSON row may repeat a key nobody reads."""
    (tmp_path / "a.csv").write_text("text,,\nfirst,1,2\n")
    (tmp_path / "b.json").write_text('[{"text": "first", "x": 1, "x": 2}]')
    assert read_texts(tmp_path / "a.csv", "text") == read_texts(tmp_path / "b.json", "text") == ["first"]
