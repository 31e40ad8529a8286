"""The embedding proxies (docs/proxies.md): a registry of pure functions, numpy arrays in.

Each module declares a `Proxy` (name, parameters, orientation, fewest rows, function);
config sections, dispatch and size checks are read from `REGISTRY`. Adding a proxy is
its module, its test, and one line here.
"""

from typing import Any

from synque_ray.proxies import coverage, mauve, mdm, mmd, pad
from synque_ray.proxies.base import Params, Proxy, ProxyOutput

REGISTRY: dict[str, Proxy[Any]] = {
    proxy.name: proxy
    for proxy in (mdm.PROXY, mmd.PROXY, pad.PROXY, mauve.PROXY, coverage.DENSITY, coverage.COVERAGE)
}

__all__ = ["REGISTRY", "Params", "Proxy", "ProxyOutput"]
