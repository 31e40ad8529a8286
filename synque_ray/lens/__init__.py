"""LENS, the LLM-judged proxy (SPEC §8): `Lens(config.lens, config.resources)`."""

from synque_ray.lens.core import Lens
from synque_ray.lens.stage import LensReport

__all__ = ["Lens", "LensReport"]
