"""The PERPLEXITY proxy against perplexity computed by hand with torch, on the bundled SmolLM2."""

import copy
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from synque_ray.perplexity import (
    PerplexityParams,
    batch_order,
    finetune,
    load,
    perplexity,
    perplexity_after_finetune,
    resampled_perplexity,
    resolve_model,
    summarise,
    text_nll,
    text_token_nll,
)

HEADLINES = [
    "Okta falls 2% after analyst downgrade",
    "Fed holds rates steady, signals two cuts this year",
    "Tesla deliveries beat estimates as China sales rebound",
    "Oil slips as inventories rise for a third week",
    "Apple shares edge higher ahead of earnings",
    "Bank of Japan keeps yield curve control unchanged",
    "Nvidia market value tops $3 trillion",
    "Gold climbs to record on rate-cut bets",
]
RECIPES = [
    "Whisk the eggs with sugar until pale and fluffy.",
    "Fold the flour in gently so the batter stays light.",
    "Bake at 180 degrees for twenty-five minutes.",
    "Let the cake cool in the tin before turning it out.",
    "Chop the onions finely and fry them in butter.",
    "Season the soup with salt, pepper and a bay leaf.",
    "Simmer the sauce until it coats the back of a spoon.",
    "Serve warm with a spoonful of cream.",
]
FAST = dict(batch_size=4, max_length=24, learning_rate=1e-4, min_train_rows=2)


@pytest.fixture(scope="module")
def model_path():
    return resolve_model(PerplexityParams())[0]


@pytest.fixture(scope="module")
def base(model_path):
    """The bundled LM, never fine-tuned (tests that train work on a deep copy)."""
    torch.set_num_threads(1)  # the hand computations too: the machine is shared
    return load(model_path)


def by_hand(model, tokenizer, texts, prefix="", suffix=""):
    """(perplexity, per-row mean NLL): each row run alone, cross-entropy summed over its text tokens only."""
    loss = torch.nn.CrossEntropyLoss(reduction="sum")
    start = tokenizer.bos_token_id
    head = [start] + tokenizer.encode(prefix, add_special_tokens=False)
    tail = tokenizer.encode(suffix, add_special_tokens=False)
    total, tokens, rows = 0.0, 0, []
    for text in texts:
        body = tokenizer.encode(text, add_special_tokens=False)
        ids = torch.tensor([head + body + tail])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        # position p predicts token p + 1; the text's tokens sit at len(head) .. len(head) + len(body) - 1
        predicted = logits[len(head) - 1 : len(head) + len(body) - 1]
        nll = loss(predicted, torch.tensor(body)).item()
        total, tokens = total + nll, tokens + len(body)
        rows.append(nll / len(body))
    return math.exp(total / tokens), np.array(rows)


def test_untrained_matches_hand_computation(base):
    model, tokenizer = base
    expected, rows = by_hand(model, tokenizer, HEADLINES[:4])
    got = perplexity(model, tokenizer, HEADLINES[:4], PerplexityParams(steps=0))
    assert got.perplexity == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(got.row_nll, rows, rtol=1e-4)
    assert list(got.row_tokens) == [len(tokenizer.encode(t, add_special_tokens=False)) for t in HEADLINES[:4]]
    assert got.score == -got.perplexity


def test_batching_and_padding_do_not_change_rows(base):
    model, tokenizer = base
    one = perplexity(model, tokenizer, HEADLINES, PerplexityParams(eval_batch_size=1))
    padded = perplexity(model, tokenizer, HEADLINES, PerplexityParams(eval_batch_size=8))
    np.testing.assert_allclose(padded.row_nll, one.row_nll, rtol=1e-4)


def test_each_tokens_nll_and_the_end_log_probability_match_a_hand_computation(base):
    """Each row run alone through torch: token j's NLL is −log_softmax at the position before it, and the
    end log-probability after token j is the log of the summed probability of the end ids there; the
    batched loop (rows of unequal length, right-padded) gives the same, and text_nll is their sum."""
    model, tokenizer = base
    texts, end_ids = HEADLINES[:3], (0, 2, 198)
    nll, end = text_token_nll(model, tokenizer, texts, "{text}", 24, 2, end_ids=end_ids)
    assert end is not None
    for text, row_nll, row_end in zip(texts, nll, end, strict=True):
        body = tokenizer.encode(text, add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([[tokenizer.bos_token_id, *body]])).logits[0], -1)
        expected = [-logp[j, token].item() for j, token in enumerate(body)]
        ends = [torch.logsumexp(logp[j + 1, list(end_ids)], 0).item() for j in range(len(body))]
        np.testing.assert_allclose(row_nll, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(row_end, ends, rtol=1e-4, atol=1e-5)
    sums, counts = text_nll(model, tokenizer, texts, "{text}", 24, 2)
    np.testing.assert_allclose(sums, [row.sum() for row in nll], rtol=1e-6)
    assert counts.tolist() == [len(row) for row in nll]


def test_template_tokens_are_not_scored(base):
    model, tokenizer = base
    template, prefix, suffix = "Financial news headline: {text}\nEnd.", "Financial news headline: ", "\nEnd."
    got = perplexity(model, tokenizer, HEADLINES[:3], PerplexityParams(template=template))
    expected, _ = by_hand(model, tokenizer, HEADLINES[:3], prefix, suffix)
    assert got.perplexity == pytest.approx(expected, rel=1e-4)
    # Counting the template's tokens too would give another value: the check above can fail.
    everything, _ = by_hand(model, tokenizer, [prefix + t + suffix for t in HEADLINES[:3]])
    assert abs(everything - got.perplexity) > 0.05 * got.perplexity
    plain = perplexity(model, tokenizer, HEADLINES[:3], PerplexityParams())
    np.testing.assert_array_equal(got.row_tokens, plain.row_tokens)


def test_max_length_cuts_scored_tokens(base):
    model, tokenizer = base
    got = perplexity(model, tokenizer, HEADLINES[:3], PerplexityParams(max_length=3))
    assert list(got.row_tokens) == [3, 3, 3]
    cut = [tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)[:3]) for t in HEADLINES[:3]]
    assert got.perplexity == pytest.approx(by_hand(model, tokenizer, cut)[0], rel=1e-4)


def tuned_perplexity(base, train, evaluate, seed=0, steps=4):
    model, tokenizer = copy.deepcopy(base[0]), base[1]
    params = PerplexityParams(steps=steps, seed=seed, **FAST)
    finetune(model, tokenizer, train, params)
    return perplexity(model, tokenizer, evaluate, params).perplexity


def test_finetuning_on_the_eval_texts_beats_unrelated_texts(base):
    untrained = perplexity(*base, HEADLINES, PerplexityParams()).perplexity
    on_itself = tuned_perplexity(base, HEADLINES, HEADLINES)
    on_recipes = tuned_perplexity(base, RECIPES, HEADLINES)
    assert on_itself < 0.8 * untrained
    assert on_itself < 0.8 * on_recipes


def test_same_seed_same_value(base):
    first = tuned_perplexity(base, HEADLINES, RECIPES[:3], seed=1, steps=2)
    again = tuned_perplexity(base, HEADLINES, RECIPES[:3], seed=1, steps=2)
    assert first == again
    assert first != perplexity(*base, RECIPES[:3], PerplexityParams()).perplexity  # the steps did train


def test_seed_changes_the_batches():
    assert not np.array_equal(batch_order(8, 2, 4, seed=1), batch_order(8, 2, 4, seed=2))


def test_batch_order_passes_over_every_row_once_per_pass():
    order = batch_order(rows=5, steps=4, batch_size=3, seed=0)
    assert order.shape == (4, 3)
    flat = order.ravel()
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))
    np.testing.assert_array_equal(order, batch_order(5, 4, 3, seed=0))
    assert batch_order(5, 0, 3, seed=0).shape == (0, 3)


def test_after_finetune_scores_each_seed_like_perplexity(model_path, base):
    params = PerplexityParams(steps=0, eval_rows=3)
    samples = {42: HEADLINES[:5], 43: HEADLINES[3:]}  # overlapping rows are scored once
    result = perplexity_after_finetune(model_path, RECIPES, samples, params)
    assert sorted(result) == [42, 43]
    for seed, texts in samples.items():
        assert len(result[seed].row_nll) == 3
        chosen = [texts[i] for i in sorted(np.random.default_rng(seed).choice(len(texts), 3, replace=False))]
        expected = perplexity(*base, chosen, params)
        assert result[seed].perplexity == pytest.approx(expected.perplexity, rel=1e-4)


@pytest.mark.parametrize("texts, message", [
    ([], "non-empty list"),
    ("a headline", "non-empty list"),
    (["fine", "  "], r"\[1\] is empty"),
    (["fine", 3], r"\[1\] is not text"),
])
def test_bad_texts_are_named(base, texts, message):
    with pytest.raises(ValueError, match=message):
        perplexity(*base, texts, PerplexityParams())
    with pytest.raises(ValueError, match=message):
        finetune(copy.deepcopy(base[0]), base[1], texts, PerplexityParams(steps=1, **FAST))


def test_bad_calls_raise(model_path, base):
    with pytest.raises(ValueError, match="needs at least 8"):
        finetune(base[0], base[1], HEADLINES[:3], PerplexityParams(steps=1))
    with pytest.raises(ValueError, match="needs at least 8"):
        perplexity_after_finetune(model_path, HEADLINES[:3], {1: HEADLINES}, PerplexityParams(steps=1))
    with pytest.raises(ValueError, match="eval_texts_by_seed is empty"):
        perplexity_after_finetune(model_path, HEADLINES, {}, PerplexityParams())
    with pytest.raises(ValueError, match=r"eval_texts_by_seed\[7\]"):
        perplexity_after_finetune(model_path, HEADLINES, {7: []}, PerplexityParams())
    with pytest.raises(ValueError, match="threads must be at least 1"):
        perplexity(*base, HEADLINES, PerplexityParams(), threads=0)


def test_non_finite_result_raises():
    with pytest.raises(ValueError, match="not finite"):
        summarise(np.array([np.inf, 1.0]), np.array([2, 2]))
    with pytest.raises(ValueError, match="not finite"):
        summarise(np.array([1e6]), np.array([1]))  # exp would overflow


@pytest.mark.parametrize("change", [{"template": "no placeholder"}, {"template": "{text} {text}"},
                                    {"steps": -1}, {"learning_rate": 0}, {"unknown": 1}])
def test_params_are_validated(change):
    with pytest.raises(ValidationError):
        PerplexityParams(**change)


def test_params_declare_their_fewest_rows():
    assert PerplexityParams(min_train_rows=20).min_rows() == (20, "perplexity fine-tuning")


def test_resampled_perplexity_reweights_the_rows_by_hand():
    score = summarise(np.array([6.0, 2.0, 9.0]), np.array([3, 2, 3]))
    replicates = resampled_perplexity(score, 50, np.random.default_rng(7))
    weights = np.random.default_rng(7).multinomial(3, [1 / 3] * 3, size=50)
    by_hand = [math.exp((w @ [6.0, 2.0, 9.0]) / (w @ [3, 2, 3])) for w in weights]
    np.testing.assert_allclose(replicates, by_hand, rtol=1e-12)
    assert min(replicates) < score.perplexity < max(replicates)
