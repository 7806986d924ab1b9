"""Layer 3: the PyMC proxy model, its fit, files and diagnostics."""

from proxyscope.model.diagnostics import Diagnostics
from proxyscope.model.fit import ProxyFit, load
from proxyscope.model.priors import Priors
from proxyscope.model.proxy_model import ProxyModel

__all__ = ["Diagnostics", "Priors", "ProxyFit", "ProxyModel", "load"]
