"""Which sampler runs a fit, and its settings, checked against the chosen sampler's
real settings before anything compiles.

The keys a sampler accepts are read from the installed sampler itself (nutpie's
``sample`` arguments and its settings object; PyMC's ``pm.sample`` arguments and its
NUTS step's), so a version that adds a setting is accepted without a change here. The
sampler is imported only when there are settings to check: a fit without settings,
and ``proxyscope validate`` on a spec without them, load nothing.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Mapping
from typing import Any

from proxyscope.errors import ParameterError, check_one_of, suggestion
from proxyscope.options import SAMPLERS

#: What proxyscope sets itself, with what a user sets instead.
SET_BY_PROXYSCOPE = {
    "draws": "the 'draws' argument of fit",
    "tune": "the 'tune' argument of fit",
    "chains": "the 'chains' argument of fit",
    "cores": "the number of chains (one core per chain, up to the machine's)",
    "seed": "the 'random_seed' argument of fit",
    "random_seed": "the 'random_seed' argument of fit",
    "progress_bar": "the 'progress' argument of fit",
    "progressbar": "the 'progress' argument of fit",
    "compiled_model": "",
    "model": "",
    "step": "",
    "nuts_sampler": "the 'sampler' argument of ProxyModel",
    "return_inferencedata": "",
    "return_raw_trace": "",
    "idata_kwargs": "",
    "compute_convergence_checks": "",
    "blocking": "",
    "zarr_store": "",
    "trace": "",
    "var_names": "",
    "callback": "",
    "init_mean": "",
    "initvals": "",
    "num_chains": "the 'chains' argument of fit",
    "num_draws": "the 'draws' argument of fit",
    "num_tune": "the 'tune' argument of fit",
    "vars": "",
    "rng": "",
    "initial_point": "",
    "potential": "",
    "scaling": "",
    "is_cov": "",
    "blocked": "",
    "dtype": "",
}


def nutpie_available() -> bool:
    return importlib.util.find_spec("nutpie") is not None


def default_sampler() -> str:
    return "nutpie" if nutpie_available() else "pymc"


def resolve_sampler(sampler: str | None) -> str:
    """The sampler a fit uses: "auto" (or None) is nutpie when installed, else PyMC."""
    if sampler is None or sampler == "auto":
        return default_sampler()
    check_one_of(sampler, (*SAMPLERS, "auto"), param="sampler", owner="ProxyModel")
    if sampler == "nutpie" and not nutpie_available():
        raise ParameterError(
            "The 'sampler' parameter of ProxyModel is 'nutpie' but nutpie is not installed; "
            "install proxyscope[fast] or pass sampler='pymc'."
        )
    return sampler


def sampler_keys(sampler: str) -> tuple[str, ...]:
    """The settings ``sampler`` ("nutpie" or "pymc") accepts from a user, sorted."""
    if sampler == "nutpie":
        import nutpie  # the sampler itself: only imported when there is a setting to check
        from nutpie import _lib

        names = set(inspect.signature(nutpie.sample).parameters)
        settings = _lib.PyNutsSettings.Diag(0)
        names |= {n for n in dir(settings) if not n.startswith("_") and n[0].islower()}
        names -= {"set_target_accept", "kwargs"}
    else:
        import pymc as pm  # as above

        names = set(inspect.signature(pm.sample).parameters)
        for init in (pm.NUTS.__init__, pm.step_methods.hmc.base_hmc.BaseHMC.__init__):
            names |= set(inspect.signature(init).parameters)
        names -= {"self", "kwargs", "nuts_sampler_kwargs", "compile_kwargs"}
    return tuple(sorted(names - set(SET_BY_PROXYSCOPE)))


def check_sampler_settings(
    settings: Mapping[str, Any],
    sampler: str,
    *,
    owner: str = "ProxyModel",
    param: str = "sampler_settings",
) -> dict[str, Any]:
    """``settings`` as a dict, or a :class:`ParameterError` naming the first problem.

    Unknown keys are listed with the sampler's valid ones and the closest match;
    keys proxyscope sets itself name what to use instead; ``target_accept`` must
    lie strictly between 0 and 1 and a tree depth must be a positive integer.
    """
    out = dict(settings)
    if not out:
        return out
    where = f"The '{param}' parameter of {owner}"
    for key in out:
        if not isinstance(key, str):
            raise ParameterError(f"{where} must have text keys; got {key!r}.")
        if key in SET_BY_PROXYSCOPE:
            instead = SET_BY_PROXYSCOPE[key]
            tail = f"; use {instead} instead" if instead else ""
            raise ParameterError(f"{where} cannot set {key!r}: proxyscope sets it{tail}.")
    valid = sampler_keys(sampler)
    unknown = [k for k in out if k not in valid]
    if unknown:
        key = unknown[0]
        raise ParameterError(
            f"{where} has {key!r}, which the {sampler} sampler does not have."
            f"{suggestion(key, valid)} Its settings are: {', '.join(valid)}."
        )
    if "target_accept" in out:
        value = out["target_accept"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value < 1
        ):
            raise ParameterError(
                f"{where}: 'target_accept' must be a number strictly between 0 and 1; "
                f"got {value!r}."
            )
    for depth in ("maxdepth", "max_treedepth", "mindepth", "early_max_treedepth"):
        if depth in out:
            value = out[depth]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(
                    f"{where}: {depth!r} must be a positive integer; got {value!r}."
                )
    return out
