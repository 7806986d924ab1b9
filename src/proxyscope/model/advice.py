"""How the diagnostics say what failed and what to try, on every surface.

The parameter families a failed fit names ("slopes, main effects of region"),
the syntax its advice is written in (Python arguments, command-line flags,
spec keys) and the target acceptance rates the advice and the follow-up runs
step through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxyscope.model.diagnostics import Diagnostics

#: Target acceptance rates tried in turn after divergences (the first is the default).
TARGET_ACCEPT_STEPS = (0.9, 0.95, 0.99)


def higher_target_accept(target: float) -> float | None:
    """The next of :data:`TARGET_ACCEPT_STEPS` above ``target``; None past the last."""
    return next((t for t in TARGET_ACCEPT_STEPS if t > target + 1e-9), None)


#: How each surface says the same thing.
SYNTAX: dict[str, dict[str, str]] = {
    "python": {
        "target_accept": "ProxyModel(sampler_settings={{'target_accept': {value}}})",
        "length": "fit(..., draws={draws}, tune={tune})",
        "seed": "fit(..., random_seed={seed})",
        "pooling": "ProxyModel(pooling='{pooling}')",
    },
    "cli": {
        "target_accept": "--setting target_accept={value}",
        "length": "--draws {draws} --tune {tune}",
        "seed": "--seed {seed}",
        "pooling": "--pooling {pooling}",
    },
    "spec": {
        "target_accept": "[sampler] settings = {{ target_accept = {value} }}",
        "length": "[sampler] draws = {draws}, tune = {tune}",
        "seed": "[sampler] seed = {seed}",
        "pooling": '[model] pooling = "{pooling}"',
    },
}
SURFACES = tuple(SYNTAX)


_FAMILY_NAMES = (
    # (prefixes of a parameter's name, family)
    (("loc_", "nu", "mu"), "locations (segment means of the long-term and proxy effects)"),
    (("alpha",), "intercepts"),
    (("slope_", "beta"), "slopes"),
    (("log_sigma", "sigma"), "residual scale (what the proxies miss)"),
    (("sd_e", "corr_e", "omega_e", "cpc_e"), "experiment-effect covariance"),
    (("sd_c", "corr_c", "omega_c", "cpc_c"), "within-cell covariance"),
    (("eta",), "experiment effects"),
    (("bias_",), "design bias (non-randomized designs)"),
)


def describe(parameter: str) -> str:
    """The family and piece of a parameter, e.g. "slopes, interaction scale"."""
    base = parameter.partition("[")[0]
    family = next((name for prefixes, name in _FAMILY_NAMES if base.startswith(prefixes)), "other")
    if "int_sd" in base or "interaction_sd" in base:
        piece = "interaction scale"
    elif "int_raw" in base or "int_z" in base:
        piece = "interactions"
    elif "_global" in base:
        piece = "global value"
    elif "_main" in base:
        column = base.split("__")[-1] if "__" in base else base.split("_main_")[-1]
        piece = ("main-effect scale of " if "main_sd" in base else "main effects of ") + column
    elif base == "sd_e_outcome":
        piece = "scale of the long-term effect no proxy carries"
    elif base in ("sd_e", "sd_c", "corr_e", "corr_c", "omega_e", "omega_c", "cpc_e", "cpc_c"):
        piece = "scales" if base.startswith("sd") else "correlations"
    elif base in ("eta", "eta_outcome"):
        piece = "per experiment"
    elif base.startswith("bias_"):
        design = base.split("__")[-1] if "__" in base else ""
        piece = ("scales" if "_sd" in base else "correlations") + (
            f" of {design}" if design else ""
        )
    else:
        piece = "per segment"
    return f"{family}, {piece}"


def failed_families(diag: Diagnostics) -> list[str]:
    """The failing parameters grouped by family and piece, with the metrics they concern."""
    groups: dict[str, list[str]] = {}
    for name in diag.failed["parameter"]:
        key = describe(name)
        inside = name.partition("[")[2].rstrip("]")
        labels = groups.setdefault(key, [])
        metric = inside.split(", ")[0] if inside else ""
        if metric and not metric.isdigit() and metric not in labels:
            labels.append(metric)
    return [
        f"{key} ({', '.join(labels[:4])}{', ...' if len(labels) > 4 else ''})" if labels else key
        for key, labels in groups.items()
    ]
