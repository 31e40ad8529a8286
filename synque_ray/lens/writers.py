"""Rubric writers: a vLLM engine in a Ray actor, or any OpenAI-compatible endpoint.

Either way an answer goes through `parse_points`; too few points are retried at a
higher temperature up to `rubric_retries` times, after which the longest list seen
is kept (and marked short), and no list at all is that candidate's failure.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

from synque_ray.errors import UserError
from synque_ray.lens import prompts
from synque_ray.lens.parsing import max_answer_tokens, parse_points, points_schema
from synque_ray.lens.rubric import Rubric, RubricRequest, fit_rows, prompt_budget


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
    results: dict[int, Rubric | str] = {}  # by request; every request gets one
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
    return [results[i] for i in range(len(requests))]


def _failure(request: RubricRequest, part: str, attempts: int, last: str) -> str:
    snippet = " ".join(last.split())[:80]
    return (
        f"lens: the rubric writer gave no parseable list of {part} for candidate '{request.dataset_id}' "
        f"seed {request.seed} after {attempts} attempts (last answer began: {snippet!r})"
    )


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


def write_rubrics_on_ray(settings: dict, model_id: str, rows: list[dict], task: str, n: int,
                         retries: int) -> dict[int, Rubric | str]:
    """Rubrics of `rows` (pair, dataset_id, seed, real_rows, synthetic_rows as JSON lists) on Ray Data."""
    import pyarrow as pa

    from synque_ray.raycluster import ensure_ray, map_actor_pool

    if not rows:
        return {}
    # Rubrics are written before any stage has started Ray: start it as every stage does (before
    # Ray is imported), not as Ray Data would on its own (a default cluster, dashboard included).
    ensure_ray()
    import ray.data

    actors = max(1, min(settings["actors"], len(rows)))
    dataset = map_actor_pool(
        ray.data.from_arrow(pa.Table.from_pylist(rows)), RubricActor,
        {"settings": settings, "model_id": model_id, "task": task, "n": n, "retries": retries},
        actors=actors, batch_size=max(1, min(-(-len(rows) // actors), 64)), batch_format="pyarrow",
        num_cpus=1, num_gpus=settings["num_gpus"],
    )
    results: dict[int, Rubric | str] = {}
    for row in dataset.iter_rows():
        if row["error"]:
            results[row["pair"]] = row["error"]
        else:
            results[row["pair"]] = Rubric.from_json(json.loads(row["rubric"]), "rubric writer")
    return results
