"""Rubric and answer parsing on messy model outputs (no model needed)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from synque_ray.errors import UserError
from synque_ray.lens import prompts
from synque_ray.lens.parsing import parse_points
from synque_ray.lens.rubric import Rubric, RubricRequest, fit_rows, load_rubric_file, sample_rows
from synque_ray.lens.writers import Writer, write_rubrics
from synque_ray.lens.judge import read_answer

THREE = ["Headlines name a listed company", "Most rows quote a percentage move", "Tone is neutral to upbeat"]


@pytest.mark.parametrize(
    "answer",
    [
        json.dumps(THREE),
        "```json\n" + json.dumps(THREE, indent=2) + "\n```",
        "Sure! Here is the list you asked for:\n" + json.dumps(THREE) + "\nLet me know if you need more.",
        json.dumps({"points": THREE}),
        json.dumps([{"point": p} for p in THREE]),
        "- Headlines name a listed company\n- Most rows quote a percentage move\n- Tone is neutral to upbeat\n",
        "1. Headlines name a listed company\n2) Most rows quote a percentage move\n3. Tone is neutral to upbeat",
        '["Headlines name a listed company", "Most rows quote a percentage move", "Tone is neutral to upbeat", "ext',
    ],
    ids=["plain", "fenced", "prose-around", "object", "objects", "dashes", "numbered", "cut-off"],
)
def test_messy_answers_parse(answer):
    assert parse_points(answer, 3) == THREE


def test_too_many_points_are_cut_and_duplicates_dropped():
    answer = json.dumps(THREE + ["headlines name a listed company", "Extra point one", "Extra point two"])
    assert parse_points(answer, 3) == THREE
    assert parse_points(json.dumps([THREE[0], THREE[0].upper(), THREE[1]]), 3) == [THREE[0], THREE[1]]


def test_best_of_several_lists_and_junk():
    answer = 'First try: ["only one point here"] then the real one: ' + json.dumps(THREE)
    assert parse_points(answer, 3) == THREE
    assert parse_points("", 3) == []
    assert parse_points("I cannot help with that.", 3) == []
    assert parse_points('["", "  ", "12", "ok"]', 3) == []  # empty, numeric or too short items are not points
    assert parse_points("[1.1.1.1.1.1", 3) == []


class FakeWriter(Writer):
    """Replays scripted answers: one list per attempt, each answering every conversation."""

    model_id = "fake"

    def __init__(self, script):
        self.script, self.calls, self.seen = script, [], []

    def complete(self, conversations, n_points, attempt):
        self.calls.append((len(conversations), attempt))
        self.seen.append(conversations)
        answer = self.script(conversations, attempt)
        return [answer] * len(conversations)


def request():
    return RubricRequest("cand", 42, ["Okta -2% on valuation downgrade"], ["Acme shares jump 5% after upgrade"])


def test_short_answers_are_retried_then_kept_marked_short():
    def script(conversations, attempt):
        return json.dumps(THREE[:2]) if attempt < 2 else json.dumps(THREE[:1])

    writer = FakeWriter(script)
    (rubric,) = write_rubrics(writer, [request()], "sentiment", 3, retries=2)
    assert isinstance(rubric, Rubric)
    assert rubric.commonalities == THREE[:2]  # the longest list seen
    assert rubric.short
    assert rubric.attempts == {"commonalities": 3, "real_vs_synthetic": 3, "synthetic_vs_real": 3}
    # commonalities: 3 attempts of 1 conversation; then both difference lists together, 3 attempts
    assert writer.calls == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_a_good_retry_stops_retrying():
    writer = FakeWriter(lambda c, attempt: "no idea" if attempt == 0 else json.dumps(THREE))
    (rubric,) = write_rubrics(writer, [request()], "generic", 3, retries=3)
    assert not rubric.short and rubric.attempts["commonalities"] == 2
    # the differences prompts the writer was sent carry the commonalities it gave on the retry
    differences = writer.seen[2]
    assert len(differences) == 2
    assert all(point in conversation[-1]["content"] for conversation in differences for point in THREE)


def test_no_list_at_all_is_a_clear_error_message():
    writer = FakeWriter(lambda c, attempt: "Sorry, I am just a small model.")
    (result,) = write_rubrics(writer, [request()], "sentiment", 3, retries=1)
    assert isinstance(result, str)
    assert "candidate 'cand' seed 42 after 2 attempts" in result and "Sorry, I am" in result
    assert "\n" not in result


def test_prompt_families_differ_and_mention_the_samples():
    texts = {task: prompts.commonalities_prompt(task, ["real row"], ["synthetic row"], 4)[1]["content"]
             for task in prompts.FAMILIES}
    assert len(set(texts.values())) == len(prompts.FAMILIES)
    for text in texts.values():
        assert "1. real row" in text and "1. synthetic row" in text and "4 strings" in text
    web = prompts.judge_prefix("web", ["c"], ["d"], real_first=True)
    assert "REAL rows apart from SYNTHETIC" in web and "page" in web


def test_rubric_file_single_and_per_candidate(tmp_path):
    rubric = {"commonalities": ["a b c"], "real_vs_synthetic": ["d e f"], "synthetic_vs_real": ["g h i"]}
    single = tmp_path / "one.json"
    single.write_text(json.dumps(rubric))
    loaded = load_rubric_file(str(single), ["x", "y"])
    assert set(loaded) == {"x", "y"} and loaded["x"].commonalities == ["a b c"]

    per = tmp_path / "per.json"
    per.write_text(json.dumps({"x": rubric}))
    with pytest.raises(UserError, match="no rubric for candidate 'y'"):
        load_rubric_file(str(per), ["x", "y"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"commonalities": ["a"], "real_vs_synthetic": [], "synthetic_vs_real": ["b"]}))
    with pytest.raises(UserError, match="'real_vs_synthetic' must be a non-empty list"):
        load_rubric_file(str(bad), ["x"])
    with pytest.raises(UserError, match="not found"):
        load_rubric_file(str(tmp_path / "missing.json"), ["x"])
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(UserError, match="not valid JSON"):
        load_rubric_file(str(tmp_path / "broken.json"), ["x"])


def test_rows_fit_the_budget_alternately():
    real, synthetic = [f"r{i} " * 10 for i in range(20)], [f"s{i} " * 10 for i in range(20)]
    kept_real, kept_synth = fit_rows(real, synthetic, budget=100, count_tokens=lambda t: len(t.split()))
    assert 3 <= len(kept_real) <= 4 and abs(len(kept_real) - len(kept_synth)) <= 1
    # one row of each side is always kept, cut to a displayable length
    kept_real, kept_synth = fit_rows(["x " * 500], ["y " * 500], 10, lambda t: len(t.split()))
    assert len(kept_real) == len(kept_synth) == 1 and len(kept_real[0]) <= 400 and kept_real[0].endswith("…")
    assert sample_rows(list("abcdef"), 3, 1) == sample_rows(list("abcdef"), 3, 1)
    assert len(sample_rows(list("abcdef"), 3, 1)) == 3 and sample_rows(list("ab"), 3, 1) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0", 0), (" 4.", 4), ("very likely", 4), ("Very unlikely", 0), ("unlikely", 1), ("Likely", 3),
     ("unsure", 2), ("2 - unsure", 2), ("", None), ("maybe", None), ("7", None), ("10", None)],
)
def test_judgement_parsing(text, value):
    assert prompts.parse_judgement(text) == value


def fake_output(text, logprobs):
    entries = {tid: SimpleNamespace(logprob=lp, decoded_token=str(tid - 10)) for tid, lp in logprobs.items()}
    return SimpleNamespace(outputs=[SimpleNamespace(text=text, logprobs=[entries] if entries else None)])


def test_expected_judgement_from_label_probabilities():
    ids = [10, 11, 12, 13, 14]
    output = fake_output("1", {10: math.log(0.2), 11: math.log(0.5), 13: math.log(0.3)})
    value, expected = read_answer(output, ids)
    assert value == 1.0 and expected == pytest.approx(0.2 * 0 + 0.5 * 1 + 0.3 * 3)
    # probabilities that do not sum to one are renormalised over the five labels
    value, expected = read_answer(fake_output("4", {14: math.log(0.1), 12: math.log(0.1)}), ids)
    assert value == 4.0 and expected == pytest.approx(3.0)
    # no logprobs: the expected judgement is the judgement itself
    assert read_answer(fake_output("2", {}), ids) == (2.0, 2.0)
    # decoded-token fallback when digits are not single tokens
    assert read_answer(fake_output("3", {13: math.log(0.5), 14: math.log(0.5)}), None)[1] == pytest.approx(3.5)
    assert read_answer(fake_output("perhaps", {}), ids) == (None, None)
    assert read_answer(SimpleNamespace(outputs=[]), ids) == (None, None)


class FakeLLM:
    """Stands in for vllm.LLM in a test of the retry logic only: scripted texts per call."""

    def __init__(self, calls):
        self.calls, self.seen = list(calls), []

    def generate(self, requests, params, use_tqdm=False):
        texts = self.calls.pop(0)
        self.seen.append((len(requests), params.temperature))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=t, logprobs=None)], num_cached_tokens=0) for t in texts]


def test_unreadable_answers_are_retried_once_then_left_unparsed():
    from synque_ray.lens.judge import judge_prompts

    llm = FakeLLM([["3", "", "maybe", "1"], ["2", "no idea"]])
    answers, retried, _ = judge_prompts(llm, [[1], [2], [3], [4]], [10, 11, 12, 13, 14])
    assert [a[0] for a in answers] == [3.0, 2.0, None, 1.0]
    assert retried.tolist() == [False, True, True, False]
    assert llm.seen == [(4, 0.0), (2, 0.7)]  # greedy first, the retry sampled


# ---------------------------------------------------------------- a rubric too long for the scorer's context

LONG_TEXT = "Headlines of listed firms, quoted in percent; tone neutral to upbeat. " * 3


def _model_folder():
    from synque_ray.models import resolve_model

    return Path(resolve_model("bundled-minilm", "embedding.model")[0])  # a local folder with a tokenizer.json


def test_rubric_tokens_are_counted_with_the_scorer_tokenizer_without_transformers(tmp_path):
    """The count is the model's own (AutoTokenizer, computed here) and, where the folder has a
    tokenizer.json, the driver never imports transformers for it (6-7 s of a fresh process)."""
    from transformers import AutoTokenizer

    from synque_ray.lens.plan import token_counter

    folder = _model_folder()
    expected = len(AutoTokenizer.from_pretrained(folder).encode(LONG_TEXT, add_special_tokens=False))
    assert token_counter(folder)(LONG_TEXT) == expected
    without = tmp_path / "no-tokenizer-json"  # the same tokenizer from vocab.txt: AutoTokenizer is the fallback
    shutil.copytree(folder, without, ignore=shutil.ignore_patterns("tokenizer.json", "*.safetensors"))
    assert token_counter(without)(LONG_TEXT) == expected
    script = ("import sys\nfrom synque_ray.lens.plan import rubrics_too_long\n"
              f"print(rubrics_too_long({str(folder)!r}, {{'0:csr': 'x ' * 50}}, {{('a', 1): 0}}, 100))\n"
              "print('transformers' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "False"
    assert "candidate 'a' seed 1" in done.stdout  # and it still measured: 50 tokens > 100 - 96


def test_a_rubric_that_leaves_no_room_for_a_row_fails_its_candidate_alone():
    from synque_ray.lens.plan import rubrics_too_long, token_counter

    folder = _model_folder()
    long_prefix = LONG_TEXT * 4
    tokens = token_counter(folder)(long_prefix)
    pairs = {("fits", 1): 0, ("too-long", 1): 1, ("too-long", 2): 2}
    prefixes = {"0:csr": "short rubric", "0:crs": "short rubric", "1:csr": "short rubric",
                "1:crs": long_prefix, "2:csr": long_prefix, "2:crs": long_prefix}
    max_model_len = tokens + 95  # one token short of the 96 a row's template and question need
    assert rubrics_too_long(str(folder), prefixes, pairs, max_model_len) == {"too-long": (
        f"lens.max_model_len: the rubric of candidate 'too-long' seed 1 takes {tokens} tokens, more than the "
        f"{max_model_len} of lens.max_model_len leave for a row; raise it or lower lens.rubric_points")}
    assert rubrics_too_long(str(folder), prefixes, pairs, tokens + 96) == {}
    assert rubrics_too_long("org/a-hub-id", prefixes, pairs, 10) == {}  # a hub id is left to the engine
