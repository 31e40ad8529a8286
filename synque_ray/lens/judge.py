"""LENS step 2: every row judged four times by a vLLM scorer on Ray Data (docs/proxies.md, LENS).

Rows (of the candidates and of U_r, one copy per (candidate, seed) rubric) are
sharded across `JudgeActor`s, each holding one vLLM engine. A row becomes four
prompts, label {real, synthetic} x differences {C_{s,r}, C_{r,s}}, laid out as

    [chat head + rubric prefix for (pair, D)] [row] [question naming the label + chat tail]

and handed to vLLM as token ids, so that the rubric prefix is token-for-token the
same for every row of a pair (prefix caching) and the row is shared by the two
labels. Answers are constrained to the digits 0..4 (structured outputs), decoded
greedily, and the probabilities vLLM reports for the five digits give the expected
judgement sum p(i) * i next to the argmax. An answer that still cannot be read is
asked again once (sampled); if that fails too the row is recorded as unparsed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from synque_ray.lens import prompts

LABEL_NAMES = ("real", "synth")
DIFFERENCE_NAMES = ("csr", "crs")  # C_{s,r} (synthetic apart from real), C_{r,s}
JUDGEMENT_COLUMNS = [f"g_{label}_{d}" for d in DIFFERENCE_NAMES for label in LABEL_NAMES]
EXPECTED_COLUMNS = [f"e_{label}_{d}" for d in DIFFERENCE_NAMES for label in LABEL_NAMES]
OUTPUT_SCHEMA = pa.schema(
    [
        ("dataset_id", pa.string()), ("seed", pa.int64()), ("row_id", pa.int64()), ("role", pa.string()),
        *[(c, pa.float64()) for c in JUDGEMENT_COLUMNS], *[(c, pa.float64()) for c in EXPECTED_COLUMNS],
        ("unparsed", pa.bool_()), ("retried", pa.int64()), ("prompt_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
    ]
)
SENTINEL = "\u0000ROW\u0000"


def prefix_key(pair: int, difference: str) -> str:
    return f"{pair}:{difference}"


class PromptBuilder:
    """Token ids of the judging prompts, from a tokenizer and the rubric prefixes."""

    def __init__(self, tokenizer, prefixes: dict[str, str], max_row_tokens: int, max_model_len: int):
        self.tokenizer = tokenizer
        self.prefixes = prefixes
        self.max_row_tokens = max_row_tokens
        self.max_model_len = max_model_len
        self._heads: dict[str, list[int]] = {}
        self._tails: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _render(self, prefix: str, label: str) -> tuple[str, str]:
        messages = prompts.judge_messages(prefix, SENTINEL, label)
        template = getattr(self.tokenizer, "chat_template", None)
        if template:
            try:
                text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - templates without a system role: fold it into the user turn
                merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
                text = self.tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{messages[0]['content']}\n\n{messages[1]['content']}\nAnswer: "
        head, tail = text.split(SENTINEL, 1)
        return head, tail

    def head(self, key: str) -> list[int]:
        if key not in self._heads:
            self._heads[key] = self._encode(self._render(self.prefixes[key], "real")[0])
        return self._heads[key]

    def tail(self, label: str) -> list[int]:
        if label not in self._tails:
            any_prefix = next(iter(self.prefixes.values()), "")
            self._tails[label] = self._encode(self._render(any_prefix, label)[1])
        return self._tails[label]

    def row(self, text: str, key: str) -> list[int]:
        room = self.max_model_len - len(self.head(key)) - max(len(self.tail("real")), len(self.tail("synthetic"))) - 4
        return self._encode(text)[: max(0, min(self.max_row_tokens, room))]

    def prompts_for(self, pair: int, text: str) -> list[list[int]]:
        """The four prompts of one row, in JUDGEMENT_COLUMNS order."""
        out = []
        for difference in DIFFERENCE_NAMES:
            key = prefix_key(pair, difference)
            head, row = self.head(key), self.row(text, key)
            for label in ("real", "synthetic"):
                out.append(head + row + self.tail(label))
        return out


def label_token_ids(tokenizer) -> list[int] | None:
    """The token id of each answer digit, or None when a digit is not a single token."""
    ids = []
    for answer in prompts.ANSWERS:
        encoded = tokenizer.encode(answer, add_special_tokens=False)
        if len(encoded) != 1:
            return None
        ids.append(encoded[0])
    return ids


def sampling_params(label_ids: list[int] | None, attempt: int):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    constraint = StructuredOutputsParams(choice=list(prompts.ANSWERS))
    common = dict(
        temperature=0.0 if attempt == 0 else 0.7, seed=attempt, max_tokens=1 if label_ids else 4,
        structured_outputs=constraint, logprobs=len(prompts.ANSWERS) if label_ids else 20,
    )
    if label_ids:
        try:
            return SamplingParams(**common, logprob_token_ids=label_ids)
        except TypeError:  # an older vLLM: the top-20 usually holds the digits
            common["logprobs"] = 20
    return SamplingParams(**common)


def read_answer(output, label_ids: list[int] | None) -> tuple[float | None, float | None]:
    """(judgement 0..4, expected judgement) from one vLLM RequestOutput; None when unreadable."""
    if not output.outputs:
        return None, None
    completion = output.outputs[0]
    value = prompts.parse_judgement(completion.text or "")
    if value is None:
        return None, None
    expected = float(value)
    first = completion.logprobs[0] if completion.logprobs else None
    if first:
        weights = np.zeros(len(prompts.ANSWERS))
        for token_id, logprob in first.items():
            if label_ids is not None:
                if token_id in label_ids:
                    weights[label_ids.index(token_id)] = math.exp(logprob.logprob)
            else:
                decoded = (logprob.decoded_token or "").strip()
                if decoded in prompts.ANSWERS:
                    weights[int(decoded)] += math.exp(logprob.logprob)
        if weights.sum() > 0:
            weights /= weights.sum()
            expected = float(np.dot(weights, np.arange(len(prompts.ANSWERS))))
    return float(value), expected


def judge_prompts(llm, token_prompts: list[list[int]], label_ids: list[int] | None):
    """Generate, retry the unreadable ones once; (values, expected, retried flags, outputs)."""
    from vllm.inputs import TokensPrompt

    requests = [TokensPrompt(prompt_token_ids=ids) for ids in token_prompts]
    outputs = llm.generate(requests, sampling_params(label_ids, 0), use_tqdm=False)
    answers = [read_answer(out, label_ids) for out in outputs]
    retry = [i for i, (value, _) in enumerate(answers) if value is None]
    retried = np.zeros(len(requests), dtype=bool)
    if retry:
        again = llm.generate([requests[i] for i in retry], sampling_params(label_ids, 1), use_tqdm=False)
        for i, out in zip(retry, again, strict=True):
            answers[i] = read_answer(out, label_ids)
            retried[i] = True
    return answers, retried, outputs


class JudgeActor:
    """Ray Data actor: one vLLM engine; judges batches of rows under their pair's rubric."""

    def __init__(self, settings: dict, prefixes: dict[str, str], max_row_tokens: int):
        from synque_ray.lens.engine import build_engine

        self.llm = build_engine(settings)
        tokenizer = self.llm.get_tokenizer()
        self.label_ids = label_token_ids(tokenizer)
        self.builder = PromptBuilder(tokenizer, prefixes, max_row_tokens, settings["engine"]["max_model_len"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        pairs = batch.column("pair").to_pylist()
        texts = batch.column("text").to_pylist()
        token_prompts = [p for pair, text in zip(pairs, texts, strict=True)
                         for p in self.builder.prompts_for(pair, text)]
        answers, retried, outputs = judge_prompts(self.llm, token_prompts, self.label_ids)
        n = len(texts)
        values = np.array([np.nan if a[0] is None else a[0] for a in answers], dtype=np.float64).reshape(n, 4)
        expected = np.array([np.nan if a[1] is None else a[1] for a in answers], dtype=np.float64).reshape(n, 4)
        prompt_tokens = np.array([len(p) for p in token_prompts], dtype=np.int64).reshape(n, 4).sum(axis=1)
        cached = np.array([getattr(o, "num_cached_tokens", 0) or 0 for o in outputs], dtype=np.int64)
        columns = {
            "dataset_id": batch.column("dataset_id"), "seed": batch.column("seed"),
            "row_id": batch.column("row_id"), "role": batch.column("role"),
        }
        for j, name in enumerate(JUDGEMENT_COLUMNS):
            columns[name] = pa.array(values[:, j], from_pandas=True)
        for j, name in enumerate(EXPECTED_COLUMNS):
            columns[name] = pa.array(expected[:, j], from_pandas=True)
        columns["unparsed"] = pa.array(np.isnan(values).any(axis=1))
        columns["retried"] = pa.array(retried.reshape(n, 4).sum(axis=1).astype(np.int64))
        columns["prompt_tokens"] = pa.array(prompt_tokens)
        columns["cached_tokens"] = pa.array(cached.reshape(n, 4).sum(axis=1))
        return pa.table(columns)


def score_rows(blocks: list[pa.Table], settings: dict, prefixes: dict[str, str], max_row_tokens: int,
               batch_rows: int) -> Iterator[pa.Table]:
    """Judge rows on Ray Data; yields output batches (OUTPUT_SCHEMA) in input order.

    Each block has the columns pair, dataset_id, seed, row_id, role, text. The blocks move
    into the object store when judging starts: the list is emptied, so the driver keeps no texts.
    """
    import ray
    import ray.data

    from synque_ray.raycluster import map_actor_pool

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    refs = [ray.put(block) for block in blocks]
    blocks.clear()
    dataset = map_actor_pool(
        ray.data.from_arrow_refs(refs), JudgeActor,
        {"settings": settings, "prefixes": prefixes, "max_row_tokens": max_row_tokens},
        actors=settings["actors"], batch_size=batch_rows, batch_format="pyarrow",
        num_cpus=1, num_gpus=settings["num_gpus"],
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
