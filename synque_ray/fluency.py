"""The FLUENCY proxy: what sentence embeddings cannot see. Pure functions, no Ray.

A sentence embedding barely moves when a row's words are shuffled, its characters
garbled or its end cut off, yet generators do write such rows. A small causal LM sees
them at once: it finds a scrambled or truncated row far less likely than a fluent one.

Per row: the mean negative log-likelihood per text token (nats) under the bundled
SmolLM2-135M as it ships (no fine-tuning), the row's text alone after a start token,
scored exactly as the perplexity proxy scores U_r (`perplexity.text_nll`). Per
(candidate, U_r sample): the two-sample **energy distance** between the candidate's
distribution of these values and U_r's,

    E = 2·mean|x_i − y_j| − mean_{i≠i'}|x_i − x_i'| − mean_{j≠j'}|y_j − y_j'|,

with U-statistics for the two within-sample terms. score = −E (higher is better). Why
this distance:
- it compares whole distributions, both ways: a candidate of garbled rows (NLL too high)
  and one of stock phrases (too low) both differ from U_r's spread of fluency;
- it grows with how far apart they are (≈ 2|shift| for a shift larger than the spread,
  in nats), where the KS statistic stops at 1 once the two no longer overlap and so
  cannot tell a little garbled from very garbled;
- with U-statistics its expected value is exactly 0 when both sides come from one
  distribution, whatever their sizes, where the empirical Wasserstein-1 distance is
  larger for a smaller sample of the same distribution: a 16-row candidate would lose
  to a 300-row one for its size alone.

Which rows look garbled: the NLL alone cannot tell. Names, tickers, cashtags and links give
real rows a long tail of high NLL, as far out as a shuffle moves a fluent row: on real
financial tweets only 18% of shuffled rows crossed U_r's 95th percentile (BENCHMARKS.md). So
each row is judged by three signals that leave the row's rare words out, each against U_r's
own spread of it:
- **order gain** (shuffled words): the NLL of the same words in a shuffled order (one fixed
  permutation per text) minus the NLL of the row as written. A fluent row loses much when
  shuffled (a median 1.5 nats on tweets and headlines); a shuffled one loses about nothing. The
  row's own words are in both terms, so its tickers and names cancel. A row of fewer than two
  distinct words has no order and no gain;
- **spelling surprise** (misspelt words, noised letters): per word made of letters, the NLL of
  its tokens after its first. Once the LM has read a word's first piece the rest of a correctly
  spelt word is nearly certain, however rare the word; a misspelt word is cut into odd pieces,
  each unlikely. The first piece, which carries what the word *is* (a rare name), is left out;
- **end surprise** (rows cut mid-sentence): −log of the LM's probability, after the row's last
  token, that the text ends there (an end-of-text or line-break token). "Adobe price target
  raised to" stops where more is expected. Read from the row's own forward pass: no extra cost.
A row is garbled (`garbled_share`) when any signal it has is beyond U_r's `percentile` (3rd; the
97th for the surprises) of it, and `garbled_as` names what was seen. Three signals at the 3rd
percentile each mark up to about 9% of rows like U_r's (12% of 24 clean tweets, none of 24 clean
headlines); at the 5th each they marked 13-15% of U_r's own rows, and a clean candidate was
flagged in 3% of draws. The thresholds are taken over every seed's scored U_r rows
together, at least `threshold_rows` (64) of them: they describe the real domain, and a percentile
this far out of 32 rows moves a lot between samples. On real tweets and the demo's headlines a
copy shuffled, noised (15% of letters) or cut after half its words is flagged in 94-100% of draws,
a clean one in 0.0-0.4% (BENCHMARKS.md). The gain rests on one shuffle, which now and then reads
about as well as the row: that noise is one reason the limit is high (findings.LIMITS).

Fluency is a screen (`findings.SCREENS`): its score is ranked and shown but never votes in
the ensemble, and a candidate whose `garbled_share` is over its limit is passed over and
ranked after every other (docs/proxies.md). Whether text is fluent is pass or fail: among
fluent candidates the score's order is noise, and as a member of the ensemble it lowered the
sentiment benchmark's Spearman.

Cost: two forward passes of a 135M model per row (the row and its shuffle; about 5 GFLOP each
for a 20-token headline, a fifth of it the LM head), so a run scores a seeded sample of each
candidate (`max_rows`) and of each U_r sample (`real_rows`); the bootstrap replicates resample
the scored rows, so the rank interval carries the sampling noise of that sample. Neither value
depends on the seed: each distinct text is scored once per model and cached by its hash
(`synque_ray.stage.fluency`).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

import numpy as np
import polars as pl
from pydantic import Field

from synque_ray.models import resolve_llm
from synque_ray.perplexity import PLACEHOLDER, load, text_token_nll
from synque_ray.proxies.base import About, Params, centred, resample_weights
from synque_ray.rowsignals import Signal


ABOUT = About("fluency", "fluency",
              ("A screen, not a vote: it never enters the ensemble, and a candidate whose garbled_share is over"
               " its limit is passed over and ranks after every other. It sees what embeddings miss (shuffled"
               " words, misspelt words, rows cut mid-sentence): a row is garbled when a small language model finds"
               " its word order carries little, the inside of its words surprising, or its ending premature, each"
               " beyond U_r's own 3rd/97th percentile. Its score, shown for reading only,"
               " is the energy distance between the candidate's and U_r's per-row token NLL (−distance, in"
               " nats; closer to 0 is better). On CPUs it scores a sample of rows (fluency.max_rows)."),
              default=True)

# The row signals the fluency stage adds to row_scores.parquet (null on rows it did not score).
TOKEN_NLL = Signal("token_nll", pl.Float64, "token NLL (fluency)",
                   "the row's mean negative log-likelihood per token under a small LM, in nats: high = the LM "
                   "finds the row unlikely (shuffled, misspelt or cut text)", shown=True)
ORDER_GAIN = Signal("order_gain", pl.Float64, "order gain (fluency)",
                    "how much less likely the small LM finds the row's words shuffled than as written (token NLL "
                    "of the shuffle minus the row's, in nats): low = its word order carries little (shuffled or "
                    "garbled text); null for a row of fewer than two distinct words", shown=True)
SPELLING_SURPRISE = Signal(
    "spelling_surprise", pl.Float64, "spelling surprise (fluency)",
    "how much the small LM is surprised inside the row's words of letters once it has read each word's first "
    "token (the NLL of the word's later tokens, in nats per word): high = words broken into pieces it does not "
    "expect (misspelt or noised letters); null for a row without a word of letters", shown=True)
END_SURPRISE = Signal(
    "end_surprise", pl.Float64, "end surprise (fluency)",
    "how unlikely the small LM finds it that the text ends after the row's last word (−log of the probability "
    "of an end-of-text or line-break token there, in nats): high = the row stops where more is expected (cut "
    "mid-sentence); null for a row longer than fluency.max_length", shown=True)
GARBLED = Signal("garbled", pl.Boolean, "garbled (fluency)",
                 "true: one of the row's order gain, spelling surprise or end surprise is beyond U_r's percentile "
                 "of it (fluency.percentile); null for a row with none of them")
GARBLED_AS = Signal("garbled_as", pl.Utf8, "garbled as (fluency)",
                    "what the fluency screen saw in a garbled row: 'shuffled' (order gain), 'misspelt' (spelling "
                    "surprise), 'cut mid-sentence' (end surprise), comma-separated; null for a row not garbled",
                    rule=False)
SIGNALS = (TOKEN_NLL, ORDER_GAIN, SPELLING_SURPRISE, END_SURPRISE, GARBLED, GARBLED_AS)
# Each judging signal: (what a garbled row shows when it crosses U_r's percentile, True when high is bad).
CAUSES = {ORDER_GAIN.name: ("shuffled", False), SPELLING_SURPRISE.name: ("misspelt", True),
          END_SURPRISE.name: ("cut mid-sentence", True)}


class FluencyParams(Params):
    """The `fluency` proxy's parameters (its config section).

    The defaults are sized for the bundled SmolLM2-135M on a shared 2-core CPU, where it
    scores a few headlines per second per core, each twice (the row and its shuffle;
    BENCHMARKS.md): 16 rows of each candidate and 32 of each U_r sample keep `synque demo`
    within half again its time without the proxy (a run of one seed scores 32 more U_r rows
    for the thresholds, `threshold_rows`). Garbling shows in most rows it touches (two in
    three shuffled tweets and 88% of noised ones are garbled), so 16 rows tell a garbled
    candidate from a fluent one; subtle differences need more rows. On a GPU set both to null
    (every row).
    """

    PROXIES: ClassVar[tuple[About, ...]] = (ABOUT,)  # what its stage produces (`section_proxies`)

    model: str = "bundled-smollm2"
    """`bundled-smollm2` or a Hugging Face causal-LM folder; keyed by its content."""
    max_rows: int | None = Field(16, ge=2)
    """Rows of each candidate scored (one seeded sample, the same for every seed); null: every row."""
    real_rows: int | None = Field(32, ge=2)
    """Rows of each U_r sample scored (a sample drawn with that seed); null: every row."""
    max_length: int = Field(64, ge=1)
    """Text tokens kept per row; a longer row is cut (a headline is 10-40 tokens)."""
    batch_size: int = Field(32, ge=1)
    """Rows per forward pass."""
    percentile: float = Field(3.0, gt=0, lt=50)
    """A row is garbled beyond this percentile of U_r's rows on any of its three signals (below it for the
    order gain, above 100 − it for the two surprises; every seed's scored rows together)."""
    threshold_rows: int | None = Field(64, ge=2)
    """U_r rows (every seed's together) the percentiles are taken over at least: when the seeds' scored rows
    are fewer, more are drawn from their U_r samples and scored for this alone; null: the scored rows only."""
    seed: int = 0
    """Fixes which candidate rows are scored."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """The LM's number format: `auto` is bfloat16 on a GPU or a CPU that computes in it (`native_bfloat16`),
    else float32. The bundled model ships in bfloat16; on such a CPU it scores twice as fast as in float32,
    and a row's token NLL moves by about .02 nats (BENCHMARKS.md). Resolved once per run where the job
    starts (the Ray driver), and keyed: on a cluster whose workers have other CPUs than the driver's, name
    the format."""

    def min_rows(self) -> tuple[int, str]:
        return 2, "fluency's energy distance"

    def min_real_rows(self) -> tuple[int, str]:
        return 2, "fluency's energy distance"


def resolve_model(params: FluencyParams) -> tuple[str, str]:
    """(folder to load, stable model id for result and cache keys)."""
    return resolve_llm(params.model, "fluency.model")


BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 CPUs that compute in bfloat16


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 itself (from /proc/cpuinfo's flags, or `cpuinfo`'s text);
    False where that cannot be read (not Linux): elsewhere bfloat16 is emulated and slower than float32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return any(flag in flags for flag in BFLOAT16_FLAGS)


def resolve_dtype(dtype: str, gpus: float = 0.0) -> str:
    """`FluencyParams.dtype` made concrete: `auto` is bfloat16 where the LM runs on a GPU (`gpus` > 0, or
    this process sees one) or on a CPU with `native_bfloat16`, else float32."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if gpus > 0 or torch.cuda.is_available() or native_bfloat16() else "float32"


@functools.lru_cache(maxsize=1)
def _model(model_path: str, dtype: str):
    """The LM in `dtype` and its tokenizer, loaded once per process (never trained here, so safe to
    share between the tasks a worker runs)."""
    return load(model_path, dtype=dtype)


def has_text(text: str) -> bool:
    """A row the LM can score: it holds a non-space character (an empty row has no tokens)."""
    return bool(text.strip())


def shuffled_text(text: str) -> str | None:
    """The row's words (split on white space) in an order drawn from the text's own hash, never
    the order as written; None for a row of fewer than two distinct words (no order to lose).
    Fixed by the text alone, so a text's order gain is the same in every run and can be cached."""
    words = text.split()
    if len(set(words)) < 2:
        return None
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little"))
    while True:  # a permutation that changes the words' order (at least half of all do)
        order = rng.permutation(len(words))
        shuffled = [words[i] for i in order]
        if shuffled != words:
            return " ".join(shuffled)


class RowScores(NamedTuple):
    """What the LM reads in each row, each of shape (rows,), named as the row signals (NaN: none).

    token_nll: mean NLL per text token (nats); token_count: text tokens scored (0: no text);
    order_gain: the shuffle's token NLL minus the row's (`shuffled_text`); spelling_surprise and
    end_surprise: `spelling_surprise` and `end_surprise` of the row.
    """

    token_nll: np.ndarray
    token_count: np.ndarray
    order_gain: np.ndarray
    spelling_surprise: np.ndarray
    end_surprise: np.ndarray


WORD_EDGES = string.punctuation + "“”‘’«»…"  # marks stripped off a word's ends before asking whether it is letters


def letter_words(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the row's words made of letters only, once the marks at their ends
    (quotes, commas, $, #) are stripped: the words that can be misspelt. Numbers, links, tickers with
    digits are left out: their pieces are surprising however they are typed."""
    spans = []
    for match in re.finditer(r"\S+", text):
        word = match.group()
        core = word.strip(WORD_EDGES)
        if core.isalpha():
            start = match.start() + len(word) - len(word.lstrip(WORD_EDGES))
            spans.append((start, start + len(core)))
    return spans


def spelling_surprise(text: str, offsets: Sequence[tuple[int, int]], nll: np.ndarray) -> float:
    """The NLL (nats) of the tokens of each of the row's `letter_words` after the word's first token, summed
    over the words and divided by their number; NaN for a row without such a word.

    offsets: (start, end) characters of each scored token (the tokenizer's offset mapping); nll: shape
    (tokens,), each token's NLL. A token belongs to the word that holds its last character. Why: once a
    small LM has read a correctly spelt word's first piece, the rest is nearly certain (about 0 nats), so
    the sum stays small whatever the word; a misspelt word is cut into odd pieces, each unlikely. The
    word's first token carries what the word *is* (a rare name, a ticker), which is no spelling error,
    and is left out: that keeps the heavy tail of real tweets' NLL out of this signal."""
    words = letter_words(text)
    starts = [start for start, _ in words]
    later, seen = np.zeros(len(words)), np.zeros(len(words), dtype=bool)
    for (start, end), value in zip(offsets, nll, strict=True):
        word = bisect.bisect_right(starts, end - 1) - 1
        if end <= start or word < 0 or end > words[word][1]:
            continue  # a token of spaces, marks, digits or a word that is not letters
        if seen[word]:
            later[word] += value
        seen[word] = True
    return float(later[seen].sum() / seen.sum()) if seen.any() else math.nan


def end_surprise(text: str, offsets: Sequence[tuple[int, int]], end_logprob: np.ndarray, cut: bool) -> float:
    """−log P(the text ends) after the row's last token that is not white space (nats), from `end_logprob`,
    shape (tokens,), each token's log-probability of an end token next (`text_token_nll`); trailing
    spaces are no part of a row's sense. NaN when the row was `cut` at max_length (its real end was never
    read) or holds no such token. A row that stops mid-sentence ("Adobe price target raised to") ends
    where the LM expects more, far less likely than a finished one does."""
    last = [i for i, (start, end) in enumerate(offsets) if text[start:end].strip()]
    return math.nan if cut or not last else float(-end_logprob[last[-1]])


@functools.lru_cache(maxsize=4)
def end_tokens(model_path: str) -> tuple[int, ...]:
    """The ids that end a text for the LM: its special tokens (end of text, end of turn) and every token
    that begins with a line break (a row is a line)."""
    from transformers import AutoTokenizer  # here, not at the top: a config load need not import it

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    breaks = [i for i, piece in enumerate(tokenizer.batch_decode([[i] for i in range(len(tokenizer))]))
              if piece.startswith("\n")]
    return tuple(sorted({*tokenizer.all_special_ids, *breaks}))


def row_fluency(model_path: str, texts: Sequence[str], params: FluencyParams, threads: int = 1) -> RowScores:
    """The rows' `RowScores`: the rows and their `shuffled_text` scored in one batch, one forward pass
    each; the spelling and end surprises are read from the row's own pass. A row without text has NaN
    everywhere and 0 tokens; one without an order has no gain; a tokenizer without offsets (a slow one)
    gives no spelling or end surprise."""
    count = len(texts)
    shuffles = {i: shuffle for i, text in enumerate(texts) if has_text(text) and (shuffle := shuffled_text(text))}
    batch = [*texts, *shuffles.values()]
    scored = [i for i, text in enumerate(batch) if has_text(text)]
    nll, tokens = np.full(len(batch), np.nan), np.zeros(len(batch), dtype=np.int64)
    spelling, ends = np.full(count, np.nan), np.full(count, np.nan)
    if scored:
        model, tokenizer = _model(model_path, resolve_dtype(params.dtype))
        values, end_logprob = text_token_nll(model, tokenizer, [batch[i] for i in scored], PLACEHOLDER,
                                             params.max_length, params.batch_size, threads, end_tokens(model_path))
        assert end_logprob is not None
        nll[scored] = [row.mean() for row in values]
        tokens[scored] = [len(row) for row in values]
        rows = [k for k, i in enumerate(scored) if i < count]
        if rows and tokenizer.is_fast:
            encoded = tokenizer([texts[scored[k]] for k in rows], add_special_tokens=False,
                                return_offsets_mapping=True)
            for k, ids, offsets in zip(rows, encoded.input_ids, encoded.offset_mapping, strict=True):
                i, kept = scored[k], offsets[:params.max_length]
                spelling[i] = spelling_surprise(texts[i], kept, values[k])
                ends[i] = end_surprise(texts[i], kept, end_logprob[k], len(ids) > params.max_length)
    gain = np.full(count, np.nan)
    gain[list(shuffles)] = nll[count:] - nll[list(shuffles)]
    return RowScores(nll[:count], tokens[:count], gain, spelling, ends)


def _values(name: str, values: np.ndarray) -> np.ndarray:
    """A 1-D float array of at least 2 finite values; raises ValueError naming `name`."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"{name} needs at least 2 scored rows, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds a non-finite value")
    return values


def _weighted_energy(x: np.ndarray, y: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Shape (k,): the energy distance of k weighted samples. wx (k, n), wy (k, m): how often each
    row is drawn (all ones: the data as it is). A row drawn twice is two draws at distance 0, as in
    any multiset, so the within terms divide by n(n − 1) pairs of draws."""
    n, m = wx.sum(axis=1), wy.sum(axis=1)
    cross = ((wx @ np.abs(x[:, None] - y[None, :])) * wy).sum(axis=1) / (n * m)
    within_x = ((wx @ np.abs(x[:, None] - x[None, :])) * wx).sum(axis=1) / (n * (n - 1))
    within_y = ((wy @ np.abs(y[:, None] - y[None, :])) * wy).sum(axis=1) / (m * (m - 1))
    return 2 * cross - within_x - within_y


def energy_distance(candidate: np.ndarray, real: np.ndarray) -> float:
    """The unbiased energy distance between two 1-D samples (each at least 2 values): 0 in
    expectation for one distribution at any sizes, about 2|shift| for a large shift."""
    x, y = _values("candidate", candidate), _values("real", real)
    return float(_weighted_energy(x, y, np.ones((1, len(x))), np.ones((1, len(y))))[0])


def resampled_energy(candidate: np.ndarray, real: np.ndarray, resamples: int, rng: np.random.Generator
                     ) -> np.ndarray:
    """Shape (resamples,): the energy distance with both sides' rows drawn with replacement, `centred`
    on the point value (duplicated draws shrink the within terms, which would shift every replicate up)."""
    x, y = _values("candidate", candidate), _values("real", real)
    replicates = _weighted_energy(x, y, resample_weights(len(x), resamples, rng),
                                  resample_weights(len(y), resamples, rng))
    return centred(replicates, energy_distance(x, y))


def thresholds(real: Mapping[str, np.ndarray], percentile: float) -> dict[str, float]:
    """Per signal of CAUSES: U_r's value beyond which a row is garbled, from `real` (signal name -> shape
    (U_r rows,), NaN: none): its `percentile` for the order gain (low is bad), its 100 − `percentile` for
    the two surprises (high is bad), numpy's linear interpolation over the finite values. NaN when fewer
    than 2 rows have the signal (nothing to judge it by)."""
    limits = {}
    for name, (_, high_is_bad) in CAUSES.items():
        values = np.asarray(real[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        at = 100 - percentile if high_is_bad else percentile
        limits[name] = float(np.percentile(values, at)) if len(values) >= 2 else math.nan
    return limits


def garbled_rows(signals: Mapping[str, np.ndarray], limits: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(garbled, garbled_as), each of shape (rows,). signals: signal name -> shape (rows,) for every one
    of CAUSES (NaN: none); limits: `thresholds`. A row is garbled when any signal it has is beyond its
    limit (below, for the order gain), and garbled_as names what each crossing saw ("shuffled",
    "misspelt", "cut mid-sentence", comma-separated, in CAUSES' order); a row is judged (True or False)
    when it has at least one signal with a limit, else both are None."""
    rows = {len(np.asarray(signals[name])) for name in CAUSES}
    if len(rows) != 1:
        raise ValueError(f"the row signals have different lengths: {sorted(rows)}")
    size = rows.pop()
    judged = np.zeros(size, dtype=bool)
    causes: list[list[str]] = [[] for _ in range(size)]
    for name, (cause, high_is_bad) in CAUSES.items():
        values, limit = np.asarray(signals[name], dtype=np.float64), limits[name]
        has = np.isfinite(values) & math.isfinite(limit)
        judged |= has
        beyond = has & ((values > limit) if high_is_bad else (values < limit))
        for i in np.flatnonzero(beyond):
            causes[i].append(cause)
    garbled = np.full(size, None, dtype=object)
    garbled[judged] = [bool(causes[i]) for i in np.flatnonzero(judged)]
    named = np.full(size, None, dtype=object)
    for i in range(size):
        if causes[i]:
            named[i] = ", ".join(causes[i])
    return garbled, named


@dataclass
class FluencyScore:
    """Fluency of one candidate sample against one U_r sample.

    energy: the energy distance between their token-NLL distributions (nats; ≥ 0 up to noise).
    replicates: shape (resamples,), the energy distance with both sides resampled.
    garbled, garbled_as: shape (n_candidate,) each (`garbled_rows`).
    """

    energy: float
    replicates: np.ndarray
    garbled: np.ndarray
    garbled_as: np.ndarray

    @property
    def score(self) -> float:
        """Higher = predicted better: −energy distance."""
        return -self.energy


def fluency_score(candidate: np.ndarray, real: np.ndarray, signals: Mapping[str, np.ndarray],
                  limits: Mapping[str, float], resamples: int, rng: np.random.Generator) -> FluencyScore:
    """The proxy on one (candidate, U_r sample) from their rows' token NLL (rows without text already
    left out), the candidate rows' judging signals (name -> shape like `candidate`, NaN: none) and U_r's
    `thresholds` of them."""
    x, y = _values("candidate", candidate), _values("real", real)
    for name in CAUSES:
        if np.shape(signals[name]) != x.shape:
            raise ValueError(f"{name} has shape {np.shape(signals[name])}, the candidate's NLL {x.shape}")
    garbled, named = garbled_rows(signals, limits)
    return FluencyScore(energy_distance(x, y), resampled_energy(x, y, resamples, rng), garbled, named)
