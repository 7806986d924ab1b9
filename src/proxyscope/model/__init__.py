"""Layer 3: the PyMC proxy model, its fit, files and diagnostics.

Names are imported on first use (as for the package itself), so a module of this
layer that needs no PyMC (the sampler settings, the segment structure, the segment
draws) can be imported without loading it: ``proxyscope validate`` checks a spec's
sampler settings and transport target that way.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "Diagnostics": ("proxyscope.model.diagnostics", "Diagnostics"),
    "ProxyFit": ("proxyscope.model.fit", "ProxyFit"),
    "load": ("proxyscope.model.fit", "load"),
    "Priors": ("proxyscope.model.priors", "Priors"),
    "ProxyModel": ("proxyscope.model.proxy_model", "ProxyModel"),
}

__all__ = ["Diagnostics", "Priors", "ProxyFit", "ProxyModel", "load"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'proxyscope.model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
