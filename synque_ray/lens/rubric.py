"""LENS step 1: the rubric of one (candidate, seed) pair (SPEC §8).

A writer model sees up to `rubric_sample_size` rows of U_r and of the candidate and
writes three lists of `rubric_points` short statements: what both share (C), how the
real rows differ from the synthetic ones (C_{r,s}) and the reverse (C_{s,r}).

Writers are a vLLM engine (inside a Ray actor, answers constrained by a JSON schema)
or any OpenAI-compatible endpoint. Either way an answer goes through `parse_points`,
which digs a list of strings out of code fences, prose around the JSON, an object
wrapping the list, or a plain bulleted list; too many points are cut, too few are
retried at a higher temperature up to `rubric_retries` times, after which the longest
list seen is kept (and marked short), and no list at all is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synque_ray.errors import UserError
from synque_ray.lens import prompts

KEYS = ("commonalities", "real_vs_synthetic", "synthetic_vs_real")
ROW_DISPLAY_CHARS = 400  # a row shown to the writer is cut to this many characters
POINT_MAX_CHARS = 240


# ---------------------------------------------------------------- parsing


def _strip_fences(text: str) -> str:
    fenced = re.findall(r"```(?:[a-zA-Z]+)?\s*(.*?)```", text, flags=re.DOTALL)
    return "\n".join(fenced) if fenced else text


def _as_points(value: object) -> list[str] | None:
    """A list of statements from a decoded JSON value, or None when it holds none."""
    if isinstance(value, dict):
        for inner in value.values():  # {"points": [...]} or similar wrappers
            found = _as_points(inner)
            if found:
                return found
        return None
    if not isinstance(value, list):
        return None
    points = []
    for item in value:
        if isinstance(item, dict):  # [{"point": "..."}]
            item = next((v for v in item.values() if isinstance(v, str)), None)
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            points.append(str(item))
    return points or None


def _json_candidates(text: str):
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        yield value


def _quoted_strings(text: str) -> list[str]:
    """Strings of an unterminated JSON list (an answer cut off by max_tokens)."""
    start = text.find("[")
    if start < 0:
        return []
    found = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"\s*(?=[,\]])', text[start:]):
        try:
            found.append(json.loads(f'"{match.group(1)}"'))
        except json.JSONDecodeError:
            continue
    return found


_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.)])\s+(.+?)\s*$")


def _clean(points: list[str], n: int) -> list[str]:
    cleaned, seen = [], set()
    for point in points:
        point = " ".join(point.split()).strip(" -*•\"'")
        point = re.sub(r"^\d{1,2}[.)]\s+", "", point)
        if len(point) < 3 or not re.search(r"[A-Za-z]", point):
            continue
        point = point[:POINT_MAX_CHARS]
        if point.lower() in seen:
            continue
        seen.add(point.lower())
        cleaned.append(point)
    return cleaned[:n]


def parse_points(text: str, n: int) -> list[str]:
    """Up to `n` distinct statements from a writer's answer; [] when it holds none."""
    if not text or not text.strip():
        return []
    body = _strip_fences(text)
    best: list[str] = []
    for value in _json_candidates(body):
        points = _clean(_as_points(value) or [], n)
        if len(points) > len(best):
            best = points
        if len(best) >= n:
            return best
    if best:
        return best
    quoted = _clean(_quoted_strings(body), n)
    if quoted:
        return quoted
    bullets = [m.group(1) for line in body.splitlines() if (m := _BULLET.match(line))]
    return _clean(bullets, n)


# ---------------------------------------------------------------- rubrics


@dataclass
class Rubric:
    commonalities: list[str]
    real_vs_synthetic: list[str]  # C_{r,s}
    synthetic_vs_real: list[str]  # C_{s,r}
    source: str = ""  # the writer's model id, or the rubric file
    short: bool = False  # a list came back with fewer points than asked, after every retry
    attempts: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in (*KEYS, "source", "short", "attempts")}

    @classmethod
    def from_json(cls, data: dict, where: str) -> Rubric:
        if not isinstance(data, dict):
            raise UserError(f"{where}: a rubric must be an object with the keys {', '.join(KEYS)}")
        lists = {}
        for key in KEYS:
            value = data.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise UserError(f"{where}: key '{key}' must be a non-empty list of strings")
            lists[key] = [v.strip() for v in value]
        return cls(**lists, source=str(data.get("source", where)), short=bool(data.get("short", False)),
                   attempts=dict(data.get("attempts", {})))

    @property
    def digest(self) -> str:
        payload = json.dumps([getattr(self, k) for k in KEYS])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_rubric_file(path: str, dataset_ids: Sequence[str]) -> dict[str, Rubric]:
    """A user's rubric file: one rubric for every candidate, or {dataset_id: rubric}."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{path}: lens.rubric_file not found")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: lens.rubric_file is not valid JSON") from None
    if isinstance(data, dict) and "commonalities" in data:
        rubric = Rubric.from_json(data, str(path))
        rubric.source = f"file:{file.name}"
        return {dataset_id: rubric for dataset_id in dataset_ids}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a rubric object or an object of rubrics keyed by candidate id")
    rubrics = {}
    for dataset_id in dataset_ids:
        if dataset_id not in data:
            raise UserError(f"{path}: no rubric for candidate '{dataset_id}'")
        rubrics[dataset_id] = Rubric.from_json(data[dataset_id], f"{path}: candidate '{dataset_id}'")
        rubrics[dataset_id].source = f"file:{file.name}"
    return rubrics


# ---------------------------------------------------------------- what the writer sees


def sample_rows(texts: list[str], size: int, seed: int) -> list[str]:
    """Up to `size` rows, drawn reproducibly, in their original order."""
    if len(texts) <= size:
        return list(texts)
    chosen = np.random.default_rng(seed).choice(len(texts), size=size, replace=False)
    return [texts[i] for i in sorted(chosen)]


def _display(row: str) -> str:
    row = " ".join(row.split())
    return row if len(row) <= ROW_DISPLAY_CHARS else row[: ROW_DISPLAY_CHARS - 1] + "…"


def fit_rows(real: list[str], synthetic: list[str], budget: int,
             count_tokens: Callable[[str], int]) -> tuple[list[str], list[str]]:
    """Rows of each side, alternately, while their tokens fit in `budget` (at least one each)."""
    real, synthetic = [_display(r) for r in real], [_display(s) for s in synthetic]
    kept_real, kept_synth, used = [], [], 0
    for i in range(max(len(real), len(synthetic))):
        for source, kept in ((real, kept_real), (synthetic, kept_synth)):
            if i < len(source):
                cost = count_tokens(source[i]) + 4
                if used + cost > budget and kept:
                    return kept_real, kept_synth
                kept.append(source[i])
                used += cost
    return kept_real, kept_synth


def approximate_tokens(text: str) -> int:
    return len(text) // 3 + 1


@dataclass
class RubricRequest:
    dataset_id: str
    seed: int
    real_rows: list[str]  # already sampled and fitted
    synthetic_rows: list[str]


# ---------------------------------------------------------------- writing


class Writer:
    """Answers a batch of chat conversations; attempt 0 is greedy, later ones sample."""

    model_id: str = ""

    def complete(self, conversations: list[list[dict]], n_points: int, attempt: int) -> list[str]:
        raise NotImplementedError


def _ask(writer: Writer, conversations: list[list[dict]], n: int, retries: int) -> list[tuple[list[str], int, str]]:
    """(points, attempts used, last answer) per conversation, retrying the short ones."""
    best: list[list[str]] = [[] for _ in conversations]
    last = [""] * len(conversations)
    used = [0] * len(conversations)
    todo = list(range(len(conversations)))
    for attempt in range(retries + 1):
        if not todo:
            break
        answers = writer.complete([conversations[i] for i in todo], n, attempt)
        still = []
        for i, answer in zip(todo, answers, strict=True):
            used[i] = attempt + 1
            last[i] = answer
            points = parse_points(answer, n)
            if len(points) > len(best[i]):
                best[i] = points
            if len(best[i]) < n:
                still.append(i)
        todo = still
    return [(best[i], used[i], last[i]) for i in range(len(conversations))]


def write_rubrics(writer: Writer, requests: list[RubricRequest], task: str, n: int,
                  retries: int) -> list[Rubric | str]:
    """A Rubric per request, or an error message (one line) where no list could be parsed."""
    results: list[Rubric | str | None] = [None] * len(requests)
    common = _ask(writer, [prompts.commonalities_prompt(task, r.real_rows, r.synthetic_rows, n) for r in requests],
                  n, retries)
    ok = []
    for i, (points, used, last) in enumerate(common):
        if points:
            ok.append(i)
        else:
            results[i] = _failure(requests[i], "commonalities", used, last)
    conversations = []
    for i in ok:
        r = requests[i]
        for real_first in (True, False):
            conversations.append(
                prompts.differences_prompt(task, r.real_rows, r.synthetic_rows, common[i][0], n, real_first)
            )
    differences = _ask(writer, conversations, n, retries) if conversations else []
    for position, i in enumerate(ok):
        (rs, rs_used, rs_last), (sr, sr_used, sr_last) = differences[2 * position: 2 * position + 2]
        if not rs:
            results[i] = _failure(requests[i], "real_vs_synthetic", rs_used, rs_last)
        elif not sr:
            results[i] = _failure(requests[i], "synthetic_vs_real", sr_used, sr_last)
        else:
            points = common[i][0]
            results[i] = Rubric(
                commonalities=points, real_vs_synthetic=rs, synthetic_vs_real=sr, source=writer.model_id,
                short=min(len(points), len(rs), len(sr)) < n,
                attempts={"commonalities": common[i][1], "real_vs_synthetic": rs_used, "synthetic_vs_real": sr_used},
            )
    return results  # type: ignore[return-value]


def _failure(request: RubricRequest, part: str, attempts: int, last: str) -> str:
    snippet = " ".join(last.split())[:80]
    return (
        f"lens: the rubric writer gave no parseable list of {part} for candidate '{request.dataset_id}' "
        f"seed {request.seed} after {attempts} attempts (last answer began: {snippet!r})"
    )


POINT_MAX_CHARS = 160


def points_schema(n: int) -> dict:
    """A JSON list of exactly n short strings: what structured outputs constrain answers to."""
    item = {"type": "string", "minLength": 8, "maxLength": POINT_MAX_CHARS}
    return {"type": "array", "items": item, "minItems": n, "maxItems": n}


def max_answer_tokens(n: int) -> int:
    """Room for n points of the longest length the schema allows, even at one character per
    token (a degenerate small model writes "1.1.1..."), so a constrained answer always closes."""
    return (POINT_MAX_CHARS + 8) * n + 24


class VllmWriter(Writer):
    """A writer around a vllm.LLM the caller built (inside a Ray actor)."""

    def __init__(self, llm, model_id: str, structured: bool = True):
        self.llm, self.model_id, self.structured = llm, model_id, structured

    def complete(self, conversations: list[list[dict]], n_points: int, attempt: int) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        constraint = StructuredOutputsParams(json=points_schema(n_points)) if self.structured else None
        params = SamplingParams(
            temperature=0.0 if attempt == 0 else 0.8, top_p=1.0 if attempt == 0 else 0.95, seed=attempt,
            max_tokens=max_answer_tokens(n_points), repetition_penalty=1.15, structured_outputs=constraint,
        )
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        return [out.outputs[0].text if out.outputs else "" for out in outputs]


class OpenAIWriter(Writer):
    """A writer that calls an OpenAI-compatible chat endpoint (vLLM's server, a hosted API...)."""

    def __init__(self, endpoint: dict, concurrency: int = 8):
        import openai

        self.base_url = endpoint["openai_base_url"]
        self.model_id = f"{endpoint['model']}@{self.base_url}"
        self.model = endpoint["model"]
        key_env = endpoint.get("api_key_env", "OPENAI_API_KEY")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get(key_env) or "EMPTY",
                                    timeout=float(endpoint.get("timeout_s", 300)), max_retries=2)
        self.key_env, self.concurrency, self.structured = key_env, concurrency, True

    def _one(self, conversation: list[dict], n: int, attempt: int) -> str:
        import openai

        kwargs = dict(model=self.model, messages=conversation, max_tokens=max_answer_tokens(n),
                      temperature=0.0 if attempt == 0 else 0.8, seed=attempt)
        if self.structured:
            schema = {"type": "object", "properties": {"points": points_schema(n)}, "required": ["points"],
                      "additionalProperties": False}
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "points", "schema": schema, "strict": True}}
        try:
            response = self.client.chat.completions.create(**kwargs)
        except openai.BadRequestError as err:
            message = str(err).lower()
            if self.structured and any(word in message for word in ("response_format", "schema", "structured")):
                self.structured = False  # the endpoint does not do structured outputs: plain answers
                return self._one(conversation, n, attempt)
            raise UserError(f"lens.rubric_writer: {self.base_url} rejected the request ({_first_line(err)})") from None
        except openai.AuthenticationError:
            raise UserError(
                f"lens.rubric_writer: {self.base_url} rejected the API key (from ${self.key_env})"
            ) from None
        except openai.NotFoundError as err:
            raise UserError(
                f"lens.rubric_writer: {self.base_url} has no model '{self.model}' ({_first_line(err)})"
            ) from None
        except openai.APIConnectionError:
            raise UserError(f"lens.rubric_writer: cannot reach {self.base_url}") from None
        choice = response.choices[0] if response.choices else None
        return (choice.message.content or "") if choice else ""

    def complete(self, conversations: list[list[dict]], n_points: int, attempt: int) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(conversations)))) as pool:
            return list(pool.map(lambda c: self._one(c, n_points, attempt), conversations))


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:160] if str(err) else err.__class__.__name__


# ---------------------------------------------------------------- on Ray


def prompt_budget(max_model_len: int, n: int) -> int:
    """Tokens left for sample rows once the instructions, the lists and the answer fit."""
    return max(256, max_model_len - max_answer_tokens(n) - 48 * n - 400)


class RubricActor:
    """Ray Data actor: one vLLM engine writing the rubrics of a batch of (candidate, seed) pairs."""

    def __init__(self, settings: dict, model_id: str, task: str, n: int, retries: int):
        from synque_ray.lens.engine import build_engine

        llm = build_engine(settings)
        self.tokenizer = llm.get_tokenizer()
        self.writer = VllmWriter(llm, model_id)
        self.budget = prompt_budget(settings["engine"]["max_model_len"], n)
        self.task, self.n, self.retries = task, n, retries

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def __call__(self, batch):
        import pyarrow as pa

        requests = []
        for row in batch.to_pylist():
            real_rows, synthetic_rows = fit_rows(json.loads(row["real_rows"]), json.loads(row["synthetic_rows"]),
                                                 self.budget, self._tokens)
            requests.append(RubricRequest(row["dataset_id"], row["seed"], real_rows, synthetic_rows))
        results = write_rubrics(self.writer, requests, self.task, self.n, self.retries)
        return pa.table({
            "pair": batch.column("pair"),
            "rubric": [json.dumps(r.to_json()) if isinstance(r, Rubric) else "" for r in results],
            "error": [r if isinstance(r, str) else "" for r in results],
        })


def write_rubrics_on_ray(settings: dict, model_id: str, rows: list[dict], task: str, n: int, retries: int,
                         resources: dict) -> dict[int, Rubric | str]:
    """Rubrics of `rows` (pair, dataset_id, seed, real_rows, synthetic_rows as JSON lists) on Ray Data."""
    import pyarrow as pa
    import ray.data

    if not rows:
        return {}
    ray.data.DataContext.get_current().enable_progress_bars = False
    per_actor = -(-len(rows) // settings["actors"])
    dataset = ray.data.from_arrow(pa.Table.from_pylist(rows)).map_batches(
        RubricActor,
        fn_constructor_kwargs={"settings": settings, "model_id": model_id, "task": task, "n": n, "retries": retries},
        batch_size=max(1, min(per_actor, 64)),
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(settings["actors"], len(rows)))),
        max_restarts=2,
        max_task_retries=2,
        **resources,
    )
    results: dict[int, Rubric | str] = {}
    for row in dataset.iter_rows():
        if row["error"]:
            results[row["pair"]] = row["error"]
        else:
            results[row["pair"]] = Rubric.from_json(json.loads(row["rubric"]), "rubric writer")
    return results
