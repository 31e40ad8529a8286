"""The proxy metrics of SPEC §7 as pure functions: numpy arrays in, a float out."""

from synque_ray.proxies.mauve import mauve_score
from synque_ray.proxies.mdm import mdm
from synque_ray.proxies.mmd import mmd_squared
from synque_ray.proxies.pad import min_rows_for_holdout, pad

__all__ = ["mauve_score", "mdm", "mmd_squared", "min_rows_for_holdout", "pad"]
