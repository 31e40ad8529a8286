"""LENS, the LLM-judged proxy (docs/proxies.md, LENS): `Lens(config.lens, config.resources)`.

The package's names load on first use, so that importing one of its modules (the prompts, the
parsing of judgements) does not import the engine's stack.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {"Lens": "synque_ray.lens.proxy", "LensReport": "synque_ray.lens.stage"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
