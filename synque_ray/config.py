"""The job config: typed, validated once when it is loaded.

Everything downstream takes a `JobConfig` and never re-checks a value. Relative
paths are resolved against the working directory, as a shell user expects and as
`ray job submit --working-dir .` provides.
"""

from __future__ import annotations

import difflib
import json
import os
import typing
from pathlib import Path, PurePath
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synque_ray.errors import UserError
from synque_ray.fluency import FluencyParams
from synque_ray.lens_debias import ABOUT as LENS
from synque_ray.lens_families import FAMILIES
from synque_ray.perplexity import PerplexityParams
from synque_ray.reading import template_fields, utf8_text
from synque_ray.storage import check_reachable, join_location

from synque_ray.proxies import REGISTRY
from synque_ray.proxies.base import About, Params, section_proxies
from synque_ray.proxies.coverage import NeighbourParams
from synque_ray.proxies.mauve import MauveParams
from synque_ray.proxies.mdm import MdmParams
from synque_ray.proxies.mmd import MmdParams
from synque_ray.proxies.pad import PadParams

EMBEDDING_PROXY_NAMES = tuple(REGISTRY)  # computed from embeddings by Ray tasks


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _usable_text_spec(spec: str) -> str:
    """A `text` field name or template, refused here (not at the first row) when it is malformed."""
    template_fields(spec)  # its ValueError names the problem
    return spec


SEED_LIMIT = 2**32  # seeds reach scikit-learn's random_state, which takes 0 <= seed < 2**32
MAX_RESAMPLES = 10_000  # each proxy task holds a (resamples, rows) weight matrix: 10,000 × 2,000 rows = 160 MB


def _seed_list(seeds: object) -> object:
    """Seeds are whole numbers in [0, 2**32): a bool (`true` is 1 to Python), a float or a string is
    refused here, as is a negative seed or one that numpy, scikit-learn or an int64 column cannot take."""
    if isinstance(seeds, list):
        for seed in seeds:
            if type(seed) is not int or not 0 <= seed < SEED_LIMIT:
                shown = json.dumps(seed, default=str)
                raise ValueError(f"{shown} is not a seed: give whole numbers from 0 to {SEED_LIMIT - 1}")
    return seeds


class RealConfig(_Strict):
    """U_r: either a pool sampled once per seed, or one pre-drawn file per seed."""

    path: str | None = None
    samples: list[str] | None = None
    text: str
    sample_size: int = Field(200, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1)

    _text = field_validator("text")(_usable_text_spec)
    _seeds = field_validator("seeds", mode="before")(_seed_list)

    @model_validator(mode="after")
    def _one_source(self) -> RealConfig:
        if (self.path is None) == (self.samples is None):
            raise ValueError("give exactly one of real.path (a pool) or real.samples (one file per seed)")
        if self.samples is not None and len(self.samples) != len(self.seeds):
            raise ValueError(
                f"real.samples has {len(self.samples)} files but real.seeds has {len(self.seeds)} seeds; "
                "they are paired one to one"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("real.seeds has a repeated seed")
        return self


class CandidatesConfig(_Strict):
    path: str  # a folder (one file per candidate) or a glob
    text: str
    # A seeded subsample of each candidate per seed (MDM: one fixed subsample); None keeps every row.
    sample_size: int | None = Field(None, gt=0)

    _text = field_validator("text")(_usable_text_spec)


class ContaminationConfig(_Strict):
    """An evaluation (test) set the user will measure on, read as `real` is: a candidate row that
    copies one of its rows leaks it into training (`copies_eval`, the `eval_copy_share` finding)."""

    path: str
    text: str

    _text = field_validator("text")(_usable_text_spec)


class EmbeddingConfig(_Strict):
    PROXIES: ClassVar[tuple[About, ...]] = tuple(proxy.about for proxy in REGISTRY.values())  # its stage's

    model: str = "bundled-minilm"
    batch_size: int = Field(256, gt=0)
    # Inference precision: fp32, or int8 (CPU only); unset = embed.CPU_PRECISION on CPUs, fp32 on GPUs.
    # The backend follows (embed.resolve_embedding): ONNX Runtime on CPUs, torch on GPUs.
    precision: Literal["fp32", "int8"] | None = None


class RankingConfig(_Strict):
    """Rank intervals (docs/statistics.md): `resamples` bootstrap draws of rows and seeds; a `level` interval and
    best set; `p_top` counts the draws in the `top` best; the ensemble combines the proxies' ranks
    with `decorrelated` weights (the proxies that agree, a block that moves together counting about
    as one), `robust` weights (agreement with the other proxies) or as their plain `mean`."""

    resamples: int = Field(200, ge=20)
    level: float = Field(0.9, gt=0, lt=1)
    top: int = Field(5, gt=0)
    ensemble: Literal["robust", "mean", "decorrelated"] = "decorrelated"  # reduce.DEFAULT_ENSEMBLE

    @field_validator("resamples")
    @classmethod
    def _bounded(cls, resamples: int) -> int:
        if resamples > MAX_RESAMPLES:
            raise ValueError(f"{resamples} is over the {MAX_RESAMPLES} allowed (every proxy task holds a "
                             "resamples × rows matrix of draws)")
        return resamples


class LensCandidates(_Strict):
    """The cascade: judge only the `top` candidates of the cheaper proxies' ranking `by`
    ("ensemble", or a proxy of `proxies` other than lens); the others get no LENS score."""

    top: int = Field(gt=0)
    by: str = "ensemble"


class LensConfig(_Strict):
    """LENS (docs/proxies.md, LENS). The writer is a model name like the scorer, or an OpenAI-compatible
    endpoint: {openai_base_url, model, api_key_env (default OPENAI_API_KEY), timeout_s,
    context_tokens (default 8192)}."""

    PROXIES: ClassVar[tuple[About, ...]] = (LENS,)  # what its stage produces (`section_proxies`)

    scorer: str = "bundled-smollm2"
    rubric_writer: str | dict = "bundled-smollm2"
    rubric_points: int = Field(10, gt=0)
    rubric_sample_size: int = Field(200, gt=0)
    task: str = "generic"  # a prompt family of synque_ray.lens_families.FAMILIES
    judgement: Literal["label", "expected"] = "label"
    rubric_file: str | None = None  # a JSON rubric to use instead of writing one
    rubric_retries: int = Field(3, ge=0)  # extra attempts when an answer has too few points
    max_rows: int | None = Field(None, gt=0)  # judge at most this many rows per candidate
    max_row_tokens: int = Field(512, gt=0)  # a longer row is cut to this many tokens in prompts
    max_model_len: int = Field(4096, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)  # GPU only (default 0.9)
    kv_cache_sequences: int = Field(16, gt=0)  # CPU: the KV cache holds this many max_model_len sequences
    enforce_eager: bool | None = None  # default: True on CPU, False on GPU
    prefix_caching: bool = True
    block_size: int | None = Field(None, gt=0)  # KV cache block (prefix-cache granularity); CPU default 32
    batch_rows: int = Field(64, gt=0)  # rows per Ray Data batch (four prompts each)
    dtype: str = "auto"
    candidates: LensCandidates | None = None  # the cascade; None judges every candidate

    @field_validator("task")
    @classmethod
    def _known_family(cls, task: str) -> str:
        if task not in FAMILIES:  # the families are the one list of tasks: a new one needs no edit here
            raise ValueError(f"unknown task '{task}' (known: {', '.join(FAMILIES)})")
        return task

    @model_validator(mode="after")
    def _writer_endpoint(self) -> LensConfig:
        writer = self.rubric_writer
        if isinstance(writer, dict):
            allowed = {"openai_base_url", "model", "api_key_env", "timeout_s", "context_tokens"}
            unknown = sorted(set(writer) - allowed)
            if unknown:
                raise ValueError(f"rubric_writer: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
            for required in ("openai_base_url", "model"):
                if not isinstance(writer.get(required), str) or not writer[required]:
                    raise ValueError(f"rubric_writer: missing key '{required}' (a non-empty string)")
        return self


class ResourcesConfig(_Strict):
    embed_actors: int = Field(1, gt=0)
    embed_gpus: float = Field(0, ge=0)
    lens_actors: int = Field(1, gt=0)
    lens_gpus: float = Field(0, ge=0)
    tensor_parallel: int = Field(1, gt=0)
    proxy_cpus: float = Field(1, gt=0)  # CPUs reserved by each (candidate, seed) proxy task
    task_retries: int = Field(3, ge=0)  # a Ray task whose worker dies is run again this many times
    perplexity_gpus: float = Field(0, ge=0)  # GPUs each perplexity task (one fine-tune) takes
    fluency_gpus: float = Field(0, ge=0)  # GPUs each fluency task takes (then set fluency.max_rows: null)


class JobConfig(_Strict):
    """The whole job. Each proxy's parameters are a section named after it, typed by the proxy's own
    parameters model, written out here (not generated from the registry) so that a type checker sees
    `config.pad.folds`; tests/inputs/test_config_reading.py checks that every registered proxy has its section."""

    name: str
    output: str
    cache_dir: str | None = None  # embedding cache; default: <output>/cache
    allow_partial: bool = False  # publish without a proxy that failed for every candidate (named as missing)
    real: RealConfig
    candidates: CandidatesConfig
    contamination: ContaminationConfig | None = None
    embedding: EmbeddingConfig = EmbeddingConfig()
    proxies: list[str] = Field(default_factory=lambda: list(DEFAULT_PROXIES), min_length=1)
    perplexity: PerplexityParams = PerplexityParams()
    fluency: FluencyParams = FluencyParams()
    lens: LensConfig = LensConfig()
    ranking: RankingConfig = RankingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    # The embedding proxies' sections, in REGISTRY's order (after the others, as the order of errors has it).
    mdm: MdmParams = MdmParams()
    mmd: MmdParams = MmdParams()
    pad: PadParams = PadParams()
    mauve: MauveParams = MauveParams()
    density: NeighbourParams = NeighbourParams()
    coverage: NeighbourParams = NeighbourParams()

    @field_validator("output", "cache_dir")
    @classmethod
    def _named(cls, location: str | None) -> str | None:
        """An empty location would put the outputs in the working directory and the cache at '/cache'."""
        if location is not None and not location.strip():
            raise ValueError("is empty; name the folder (or URI) to write to, e.g. results/my-job")
        return location

    @field_validator("proxies")
    @classmethod
    def _known_once(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in PROXY_NAMES]
        if unknown:
            raise ValueError(f"unknown proxy '{unknown[0]}' (known: {', '.join(PROXY_NAMES)})")
        return names

    @model_validator(mode="after")
    def _no_repeats(self) -> JobConfig:
        if len(set(self.proxies)) != len(self.proxies):
            raise ValueError("proxies lists a proxy twice")
        cascade, judged = self.lens.candidates, {about.name for about in section_proxies(LensConfig)}
        if cascade is not None and judged.intersection(self.proxies):
            cheap = [p for p in self.proxies if p not in judged]
            if cascade.by == "ensemble" and not cheap:
                raise ValueError("lens.candidates.by: ensemble needs a proxy besides lens in proxies")
            if cascade.by != "ensemble" and cascade.by not in cheap:
                raise ValueError(f"lens.candidates.by: '{cascade.by}' is not ensemble or a proxy in proxies "
                                 f"other than lens ({', '.join(cheap) or 'none'})")
        if self.embedding.precision == "int8" and self.resources.embed_gpus > 0:
            raise ValueError("embedding.precision: int8 runs on CPUs only; with resources.embed_gpus > 0 "
                             "use fp32 or leave precision unset")
        return self

    @property
    def embedding_proxies(self) -> list[str]:
        return [p for p in self.proxies if p in EMBEDDING_PROXY_NAMES]

    @property
    def sized_proxies(self) -> list[str]:
        """The proxies in `proxies` whose parameters say how many rows they need (a `Params` section)."""
        return [p for p in self.proxies if isinstance(getattr(self, p), Params)]

    @property
    def cache_location(self) -> str:
        return self.cache_dir or join_location(self.output, "cache")

    def proxy_params(self, name: str) -> Params:
        """The parameters section of a proxy (`config.mdm`, `config.pad`, `config.perplexity`, ...)."""
        params = getattr(self, name, None)
        if not isinstance(params, Params):
            raise KeyError(f"'{name}' is not a proxy with a parameters section")
        return params


# Every proxy a config may name, in the order of the sections of the stages that produce them (the
# order they run in); each section declares its stage's proxies (`section_proxies`), so a proxy is
# known here once its stage's section is a field of JobConfig (tests/pipeline/test_stage_registry.py checks
# that the stage registry's sections are these).
PROXY_ABOUTS: tuple[About, ...] = tuple(
    about for field in JobConfig.model_fields.values() for about in section_proxies(field.annotation))
PROXY_NAMES = tuple(about.name for about in PROXY_ABOUTS)
STAGE_PROXY_NAMES = tuple(name for name in PROXY_NAMES if name not in EMBEDDING_PROXY_NAMES)  # a stage each
# Each proxy says whether it is a default (`About.default`, beside its code); JobConfig's `proxies` reads this.
DEFAULT_PROXIES: list[str] = [about.name for about in PROXY_ABOUTS if about.default]


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The config section (a pydantic model) that `path` (keys from the top) leads to, if any."""
    for key in path:
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            return None
        options = [field.annotation, *typing.get_args(field.annotation)]
        inner = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
        if inner is None:
            return None
        model = inner
    return model


def _nearest_key(loc: tuple) -> str:
    """" (did you mean 'x'?)" for the valid key of that section closest to an unknown one, else ""."""
    section = _model_at(JobConfig, loc[:-1])
    if section is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(section.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'{_nearest_key(first['loc'])}"
    if first["type"] == "missing":
        return f"{source}: missing key '{key}'"
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: {key + ': ' if key else ''}{message}"


def _numeric(annotation: object) -> bool:
    """Whether a field's type takes numbers and not yes/no (int, float, `int | None`, ...)."""
    options = {annotation, *typing.get_args(annotation)}
    return bool(options & {int, float}) and bool not in options


def _no_yes_no_numbers(data: dict, model: type[BaseModel], prefix: str = "") -> None:
    """A ValueError naming the key where `true`/`false` stands for a number: pydantic reads
    `sample_size: true` as 1 (as `seeds: [true]` was read as seed 1), silently."""
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue  # unknown keys are pydantic's to name
        if isinstance(value, bool) and _numeric(field.annotation):
            raise UserError(f"{prefix}{key}: {str(value).lower()} is not a number")
        section = _model_at(model, (key,))
        if section is not None and isinstance(value, dict):
            _no_yes_no_numbers(value, section, f"{prefix}{key}.")


def parse_config(data: object, source: str = "config") -> JobConfig:
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of keys at the top level")
    try:
        _no_yes_no_numbers(data, JobConfig)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    try:
        return JobConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(_one_line(err, source)) from None


def _among_candidates(value: str, location: str) -> str | None:
    """How a local output folder `value` sits among the candidates of `location`: "is" when it is
    the candidates folder (or, for a glob, a folder its files are matched in), "is inside" when it
    lies in a candidates folder, None otherwise. Inside a glob's folders is allowed: the glob
    reaches only the depth it names (`*.json` in the working directory, `results/x` beside it)."""
    target = PurePath(os.path.realpath(value))
    if any(ch in location for ch in "*?["):
        pattern = os.path.realpath(os.path.dirname(location) or ".")
        return "is" if target.match(pattern) else None
    if not Path(location).is_dir():
        return None  # one file, or none: nothing else is read from its folder
    folder = PurePath(os.path.realpath(location))
    return "is" if target == folder else "is inside" if folder in target.parents else None


def _check_output_folders(config: JobConfig, source: str) -> None:
    """`output` and `cache_dir`, when local, must be folders or creatable as folders: a path that
    is (or lies under) an existing file is refused now, not after the embedding; one that is (or
    lies in) the candidates folder too, since the next run would read the outputs as candidates.
    A URI must answer now, not after the embedding."""
    location = config.candidates.path
    for key, value in (("output", config.output), ("cache_dir", config.cache_dir)):
        if value is None:
            continue
        if "://" in value:
            check_reachable(value, f"{source}: {key}")
            continue
        target = Path(value)
        blocker = next((p for p in (target, *target.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            if blocker == target:
                raise UserError(f"{source}: {key}: '{value}' is a file, not a folder")
            raise UserError(f"{source}: {key}: '{value}' cannot be a folder: '{blocker}' is a file")
        where = _among_candidates(value, location)
        if where is not None:
            folder = (os.path.dirname(location) or ".") if any(ch in location for ch in "*?[") else location
            raise UserError(f"{source}: {key}: '{value}' {where} the candidates folder '{folder}'; the next run "
                            "would read its files as candidates: give a folder outside it")


def _check_input_paths(config: JobConfig, source: str) -> None:
    """Each input path that does not exist is named by its key, now: the reader would name only the
    file, and a user with several paths in a config has to guess which key it came from."""
    real = config.real
    files = [("real.path", real.path)] if real.path is not None else []
    files += [(f"real.samples[{i}]", sample) for i, sample in enumerate(real.samples or [])]
    for key, value in files:
        if not Path(value).is_file():
            why = "a folder, not a file" if Path(value).is_dir() else "file not found"
            raise UserError(f"{source}: {key}: {value}: {why}")
    location = config.candidates.path
    if not any(ch in location for ch in "*?[") and not Path(location).exists():
        raise UserError(f"{source}: candidates.path: {location}: folder or glob not found")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (PyYAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: a key given here overrides the merged one, by design
            key = self.construct_object(key_node, deep=True)
            try:
                line = first.get(key)
            except TypeError:  # an unhashable key: the base loader says why
                continue
            if line is not None:
                raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: key '{key}' is given twice in one "
                                    f"mapping (first on line {line + 1}); keep one")
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


class _DuplicateKey(yaml.YAMLError):
    pass


def _yaml_error_line(err: yaml.YAMLError) -> str:
    """Where and why YAML could not be read, as "line N is not valid YAML: REASON".

    PyYAML marks the token where it gave up, which is often the line after the mistake (a key
    missing its ':' is found out at the next line). A scanner's context ("while scanning a simple
    key") and an open flow collection ("while parsing a flow sequence") mark where the mistake
    is, so their line is named; a block's context marks where the block starts, maybe far above."""
    problem, context = getattr(err, "problem", None), getattr(err, "context", None)
    problem_mark, context_mark = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    if problem_mark is None:
        return f"is not valid YAML ({str(err).splitlines()[0]})"
    line = problem_mark.line + 1
    reason = problem or "unreadable"
    if context and context_mark is not None:
        opened = context_mark.line + 1
        if context.startswith(("while scanning", "while parsing a flow")):
            line = opened
        reason += f" ({context}" + (f" from line {opened})" if opened != line else ")")
    return f"line {line} is not valid YAML: {reason}"


def read_yaml(path: Path, text: str) -> object:
    """The YAML document of `text`; a UserError names the line and the parser's reason, or the
    key given twice."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except _DuplicateKey as err:
        raise UserError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: {_yaml_error_line(err)}") from None


def check_config(data: object, source: str = "config", check_inputs: bool = True) -> JobConfig:
    """A config (the parsed YAML, or a dict shaped like it) validated, its output checked and
    (`check_inputs`, unless the caller writes the inputs itself, as the demo does) its input paths
    found; `source` names it in the one-line errors."""
    config = parse_config(data, source)
    if check_inputs:
        _check_input_paths(config, source)
    _check_output_folders(config, source)
    return config


def load_config(path: str | Path, check_inputs: bool = True) -> JobConfig:
    """The config of a YAML file, checked as `check_config` checks it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    return check_config(read_yaml(path, utf8_text(path, path.read_bytes())), str(path), check_inputs)
