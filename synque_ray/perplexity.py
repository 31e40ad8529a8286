"""The paper's PERPLEXITY baseline (SynQuE §5, Table 5; docs/proxies.md): pure functions, no Ray.

A small causal LM is fine-tuned briefly on a candidate's rows; its perplexity on the
real sample U_r is the proxy. Lower perplexity means the LM that learned from the
candidate predicts real rows better, so the score is −perplexity.

Only the tokens of a row's text count, in training and in evaluation. A row may be
wrapped in a `template` with one `{text}` placeholder; the template's tokens and the
start token are context (label −100), never predicted, so the same rows give the same
scored tokens whatever the template. The parts are tokenised separately (prefix, text,
suffix) so that the text's tokens are exactly the tokens of the text alone.

    (start) [prefix tokens] [text tokens, at most max_length] [suffix tokens]
    labels:  -100  -100 ...   token ids (scored)                 -100 ...

One candidate = one fine-tune, then every seed's U_r is scored with that model
(`perplexity_after_finetune`), which is the shape of one Ray task per candidate.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from synque_ray.models import resolve_llm
from synque_ray.proxies.base import About, Params, resample_weights
from synque_ray.reading import seeded_indices


ABOUT = About("perplexity", "perplexity",
              ("Perplexity of U_r under a small language model fine-tuned on the candidate (score = "
               "−perplexity); lower perplexity is better. The paper's baseline: slow, and it needs enough "
               "candidate rows to fine-tune on."))

IGNORE = -100  # the label that cross-entropy leaves out (torch's and transformers' convention)
PLACEHOLDER = "{text}"
MAX_NLL = math.log(np.finfo(np.float64).max)  # a larger mean NLL overflows exp()


class PerplexityParams(Params):
    """The `perplexity` proxy's parameters (its config section).

    The defaults are sized for the bundled SmolLM2-135M on a CPU with 2 threads, where
    one step of 8 headline-length rows (forward and backward, ~0.2 TFLOP) takes about
    2 s: 16 AdamW steps of 8 rows (128 rows, an eighth of a 1,000-row candidate) are
    about 30 s, and scoring 200 U_r rows about 10 s. A brief fine-tune is the
    baseline's point: it shifts the LM toward the candidate's style and content
    without the cost of training to convergence; on a GPU raise `steps`. A constant
    learning rate of 1e-4 is large enough for 16 steps to move a 135M model and small
    enough not to wreck it (no warm-up or decay: too few steps for a schedule to matter).
    """

    PROXIES: ClassVar[tuple[About, ...]] = (ABOUT,)  # what its stage produces (`section_proxies`)

    model: str = "bundled-smollm2"
    """`bundled-smollm2` (converted once to a Hugging Face folder and cached) or a model folder."""
    steps: int = Field(16, ge=0)
    """Optimiser steps; 0 scores the model as it is (no fine-tuning)."""
    batch_size: int = Field(8, ge=1)
    """Candidate rows per step; rows are drawn in an order fixed by `seed`, reshuffled every pass."""
    learning_rate: float = Field(1e-4, gt=0)
    max_length: int = Field(128, ge=1)
    """Text tokens kept per row (training and scoring); a longer row is cut. 128 holds most single-field rows
    (a headline is 10–40 tokens) and caps the cost of the few long ones."""
    eval_batch_size: int = Field(32, ge=1)
    """U_r rows per forward pass when scoring (no gradients, so larger than `batch_size`)."""
    seed: int = 0
    """Fixes the initial torch RNG state and the order of training rows: same seed, same score."""
    eval_rows: int | None = Field(None, ge=1)
    """Score at most this many rows of each U_r sample (a seeded subset); None scores them all."""
    min_train_rows: int = Field(8, ge=1)
    """Fewest candidate rows to fine-tune on: with fewer, the steps repeat a handful of rows and the score
    measures memorisation rather than the candidate's distribution."""
    template: str = PLACEHOLDER
    """How a row is shown to the LM, with one `{text}`; the template's own tokens are never scored."""

    @field_validator("template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        if value.count(PLACEHOLDER) != 1:
            raise ValueError(f"template must hold '{PLACEHOLDER}' exactly once, got {value!r}")
        return value

    def min_rows(self) -> tuple[int, str]:
        return self.min_train_rows, "perplexity fine-tuning"


@dataclass
class SampleScore:
    """The fine-tuned LM on one U_r sample.

    perplexity: exp(total NLL / total text tokens) over the sample's rows (token-weighted,
        the usual corpus perplexity); ≥ 1, lower = the LM predicts the real rows better.
    row_nll: shape (n_rows,), each row's mean NLL per text token in nats (exp of it is the
        row's own perplexity), in the order of the rows scored.
    row_tokens: shape (n_rows,), how many text tokens each row contributed.
    """

    perplexity: float
    row_nll: np.ndarray
    row_tokens: np.ndarray

    @property
    def score(self) -> float:
        """Higher = predicted better (docs/proxies.md): −perplexity."""
        return -self.perplexity


def resolve_model(params: PerplexityParams) -> tuple[str, str]:
    """(folder to load, stable model id for result keys), resolved as LENS's models are."""
    return resolve_llm(params.model, "perplexity.model")


def check_texts(texts: Sequence[str], name: str) -> list[str]:
    """A non-empty list of non-blank strings; raises ValueError naming `name` and the row."""
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"{name} must be a non-empty list of texts")
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{number}] is not text (got {type(text).__name__})")
        if not text.strip():
            raise ValueError(f"{name}[{number}] is empty: it has no tokens to score")
    return list(texts)


def check_train_texts(texts: Sequence[str], params: PerplexityParams) -> list[str]:
    """`check_texts`, and at least `params.min_train_rows` rows."""
    texts = check_texts(texts, "train_texts")
    if len(texts) < params.min_train_rows:
        raise ValueError(f"train_texts has {len(texts)} rows; perplexity fine-tuning needs at least "
                         f"{params.min_train_rows} (min_train_rows)")
    return texts


def encode_rows(tokenizer, texts: Sequence[str], template: str, max_length: int) -> list[tuple[list, list]]:
    """Per row (input ids, labels): labels are the ids on the row's text tokens and −100 elsewhere."""
    prefix, suffix = template.split(PLACEHOLDER)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start a row with")
    head = [start] + tokenizer(prefix, add_special_tokens=False).input_ids if prefix else [start]
    tail = tokenizer(suffix, add_special_tokens=False).input_ids if suffix else []
    bodies = tokenizer(list(texts), add_special_tokens=False).input_ids
    rows = []
    for number, body in enumerate(bodies):
        if not body:
            raise ValueError(f"row {number} has no text tokens")
        body = body[:max_length]
        rows.append((head + body + tail, [IGNORE] * len(head) + body + [IGNORE] * len(tail)))
    return rows


def collate(rows: Sequence[tuple[list, list]], pad_id: int):
    """Right-padded (input_ids, attention_mask, labels) tensors of shape (batch, longest row)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return ids, mask, labels


def position_nll(model, ids, mask, labels, end_ids: Sequence[int] = ()):
    """(NLL of shape (batch, width − 1), end of shape (batch, width) or None). NLL: position t predicts
    token t+1, in nats where that token's label is not −100, else 0. end: with `end_ids`, log P(the next
    token is one of them) at every position t, read after token t from the same logits (so it costs no
    forward pass)."""
    import torch

    ids, mask, labels = ids.to(model.device), mask.to(model.device), labels.to(model.device)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    total = torch.logsumexp(logits, dim=-1)
    targets = labels[:, 1:]
    scored = targets != IGNORE
    picked = logits[:, :-1].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = torch.where(scored, total[:, :-1] - picked, torch.zeros_like(picked))
    end = torch.logsumexp(logits[..., list(end_ids)], dim=-1) - total if end_ids else None
    return nll, end


def token_nll(model, ids, mask, labels):
    """(summed NLL in nats, scored-token count), each of shape (batch,): position t predicts token t+1,
    and only positions whose target label is not −100 count."""
    nll, _ = position_nll(model, ids, mask, labels)
    return nll.sum(dim=1), (labels[:, 1:] != IGNORE).sum(dim=1).to(nll.device)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch's intra-op work on exactly `threads` threads (the caller's CPU share), then restore."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load(model_path: str, device: str | None = None, dtype: str = "float32"):
    """(model in `dtype`, in eval mode, on `device`; tokenizer) from a Hugging Face folder. float32 by
    default: the bundled folder is stored in bfloat16, too coarse for small fine-tuning updates (a
    model only read, as the fluency screen's, may stay in bfloat16). `device` None: the GPU when
    this process sees one (a Ray task given `num_gpus`), else the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
    return model.to(device).eval(), tokenizer


def batch_order(rows: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """Shape (steps, batch_size): row indices, passing over the rows in a fresh seeded shuffle each pass."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    passes = [rng.permutation(rows) for _ in range(-(-needed // rows))]  # ceil(needed / rows) passes
    drawn = np.concatenate(passes) if passes else np.empty(0, dtype=np.int64)
    return drawn[:needed].reshape(steps, batch_size)


def finetune(model, tokenizer, texts: Sequence[str], params: PerplexityParams, threads: int = 1):
    """Fine-tune `model` in place on the candidate's `texts` (loss: mean NLL over their text tokens)
    for `params.steps` AdamW steps; returns the model in eval mode. Deterministic given `params.seed`."""
    import torch

    texts = check_train_texts(texts, params)
    rows = encode_rows(tokenizer, texts, params.template, params.max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch_threads(threads):
        torch.manual_seed(params.seed)
        optimiser = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=0.0)
        model.train()
        for batch in batch_order(len(rows), params.steps, params.batch_size, params.seed):
            nll, count = token_nll(model, *collate([rows[i] for i in batch], pad))
            loss = nll.sum() / count.sum()
            if not torch.isfinite(loss):
                raise ValueError(f"fine-tuning loss became non-finite ({loss.item()}); lower learning_rate")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
    return model.eval()


def row_nll(model, tokenizer, texts: Sequence[str], params: PerplexityParams, threads: int = 1):
    """(summed NLL, text-token count) per row, each of shape (len(texts),): `text_nll` with the
    perplexity proxy's template, length cap and scoring batch."""
    return text_nll(model, tokenizer, texts, params.template, params.max_length, params.eval_batch_size, threads)


def text_nll(model, tokenizer, texts: Sequence[str], template: str, max_length: int, batch_size: int,
             threads: int = 1):
    """(summed NLL, text-token count) per row, each of shape (len(texts),), under `model` as it is;
    no gradients (`text_token_nll` summed)."""
    nll, _ = text_token_nll(model, tokenizer, texts, template, max_length, batch_size, threads)
    return np.array([row.sum() for row in nll]), np.array([len(row) for row in nll], dtype=np.int64)


def text_token_nll(model, tokenizer, texts: Sequence[str], template: str, max_length: int, batch_size: int,
                   threads: int = 1, end_ids: Sequence[int] = ()) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Per row, in the order of `texts`: the NLL (nats) of each of its text tokens, shape (text tokens,),
    and with `end_ids` the log-probability that one of them follows each text token (`position_nll`),
    shape (text tokens,) (else None). The one scoring loop of every LM proxy (perplexity, fluency):
    rows are batched by length so that little padding is computed; no gradients."""
    import torch

    rows = encode_rows(tokenizer, check_texts(texts, "eval_texts"), template, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = np.argsort([len(ids) for ids, _ in rows], kind="stable")
    nll: list[np.ndarray] = [np.empty(0)] * len(rows)
    end: list[np.ndarray] = [np.empty(0)] * len(rows)
    model.eval()
    with torch_threads(threads), torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chosen = order[start : start + batch_size]
            ids, mask, labels = collate([rows[i] for i in chosen], pad)
            values, ends = position_nll(model, ids, mask, labels, end_ids)
            text = (labels != IGNORE).numpy()
            values = values.double().cpu().numpy()
            ends = None if ends is None else ends.double().cpu().numpy()
            for k, i in enumerate(chosen):
                nll[i] = values[k][text[k, 1:]]  # position t predicts token t + 1
                if ends is not None:
                    end[i] = ends[k][text[k]]  # read at each text token, after it
    return nll, (end if end_ids else None)


def summarise(sums: np.ndarray, counts: np.ndarray) -> SampleScore:
    """Corpus perplexity and per-row mean NLL from per-row (summed NLL, token count)."""
    mean = float(sums.sum()) / float(counts.sum()) if counts.sum() > 0 else math.nan
    if not math.isfinite(mean) or mean > MAX_NLL:
        raise ValueError(f"perplexity is not finite (mean NLL per text token: {mean:.3g} nats)")
    return SampleScore(perplexity=math.exp(mean), row_nll=sums / counts, row_tokens=counts)


def resampled_perplexity(score: SampleScore, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Shape (resamples,): the sample's perplexity with its U_r rows drawn with replacement.

    The fine-tuned model is kept (refitting it per draw would cost `resamples` fine-tunes),
    so these replicates carry U_r's sampling noise, not the fine-tune's."""
    weights = resample_weights(len(score.row_nll), resamples, rng)
    return np.exp((weights @ (score.row_nll * score.row_tokens)) / (weights @ score.row_tokens))


def perplexity(model, tokenizer, texts: Sequence[str], params: PerplexityParams, threads: int = 1) -> SampleScore:
    """The LM's perplexity on `texts` (one U_r sample) over their text tokens only."""
    return summarise(*row_nll(model, tokenizer, texts, params, threads))


def perplexity_after_finetune(model_path: str, train_texts: Sequence[str],
                              eval_texts_by_seed: Mapping[int, Sequence[str]], params: PerplexityParams,
                              threads: int = 1) -> dict[int, SampleScore]:
    """Fine-tune `model_path`'s LM once on a candidate, then score every seed's U_r sample.

    train_texts: the candidate's rows; eval_texts_by_seed: U_r sample per seed (capped to a
    subset of `params.eval_rows` rows drawn with that seed). A row shared by several samples is
    scored once. Returns {seed: SampleScore}; `row_nll` follows the (capped) sample's row order.
    """
    if not eval_texts_by_seed:
        raise ValueError("eval_texts_by_seed is empty: give at least one U_r sample")
    samples = {}
    for seed, texts in eval_texts_by_seed.items():
        texts = check_texts(texts, f"eval_texts_by_seed[{seed}]")
        samples[seed] = [texts[i] for i in seeded_indices(len(texts), params.eval_rows, seed)]
    check_train_texts(train_texts, params)
    model, tokenizer = load(model_path)
    finetune(model, tokenizer, train_texts, params, threads)
    unique = list(dict.fromkeys(text for texts in samples.values() for text in texts))
    sums, counts = row_nll(model, tokenizer, unique, params, threads)
    where = {text: i for i, text in enumerate(unique)}
    rows_of = {seed: np.array([where[text] for text in texts]) for seed, texts in samples.items()}
    return {seed: summarise(sums[rows], counts[rows]) for seed, rows in rows_of.items()}
