"""Errors said in the command line's words: a Python parameter or a spec key that
a flag set becomes that flag.

The library's errors name what the library sees: ``The 'treated_value'
parameter of summarize``, ``[data.simulate].n_experiments``. On the command line
the user typed ``--treated-value`` or ``--experiments``; :func:`as_flags`
rewrites the message so it names the flag, from the command's own parser (every
option's destination and its long name) and the spec keys the flags set
(:data:`ROLE_KEYS`, :data:`DEMO_KEYS`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping

#: The spec keys that ``validate`` and ``summarize`` set from their role flags (the
#: exposure values as NAME=VALUE pairs).
ROLE_KEYS: dict[str, str] = {
    "experiment": "columns.experiment",
    "treatment": "columns.treatment",
    "outcome": "columns.outcome",
    "treated_value": "columns.treated_value",
    "proxies": "columns.proxies",
    "segments": "columns.segments",
    "direction": "columns.directions",
    "engine": "data.engine",
    "min_users_per_arm": "data.min_users_per_arm",
    "dropna": "data.dropna",
    "cluster": "data.cluster",
    "exposure": "data.exposure",
    "exposure_value": "data.exposure_values",
    "design": "data.design",
    "time": "data.time",
    "time_period": "data.period",
}
#: The design options of ``validate`` and ``summarize``: each flag's destination (the
#: key of the same name in ``[data.<design>]``) and the designs that take it.
DESIGN_FLAGS: dict[str, tuple[str, ...]] = {
    "unit": ("did", "synthetic_control"),
    "period": ("did", "synthetic_control"),
    "first_treated": ("did",),
    "control": ("did",),
    "pre_periods": ("did",),
    "pretrend_level": ("did",),
    "min_units": ("did",),
    "running": ("rdd",),
    "cutoff": ("rdd",),
    "bandwidth": ("rdd",),
    "kernel": ("rdd",),
    "density_alpha": ("rdd",),
    "density_window": ("rdd",),
    "covariates": ("ipw",),
    "estimand": ("ipw",),
    "trim": ("ipw",),
    "n_folds": ("ipw",),
    "random_state": ("ipw",),
    "treated": ("synthetic_control",),
    "treatment_start": ("synthetic_control",),
    "fit_metric": ("synthetic_control",),
    "min_donors": ("synthetic_control",),
}
#: The spec keys the design options set (one per design that takes the option).
DESIGN_KEYS: dict[str, tuple[str, ...]] = {
    dest: tuple(f"data.{design}.{dest}" for design in designs)
    for dest, designs in DESIGN_FLAGS.items()
}
#: The spec keys that ``estimates`` sets from its flags.
ESTIMATE_KEYS: dict[str, str] = {
    "experiment": "columns.experiment",
    "metric": "columns.metric",
    "estimate": "columns.estimate",
    "se": "columns.se",
    "outcome": "columns.outcome",
    "proxies": "columns.proxies",
    "segments": "columns.segments",
    "direction": "columns.directions",
    "n_treat": "columns.n_treat",
    "n_control": "columns.n_control",
    "design": "data.design",
    "covariance": "data.covariance",
    "correlation": "data.correlation",
    "time": "data.time",
    "time_period": "data.period",
}
#: The spec keys that ``demo`` sets from its flags.
DEMO_KEYS: dict[str, str] = {
    "users": "data.simulate.n_users",
    "experiments": "data.simulate.n_experiments",
    "seed": "data.simulate.seed",
    "draws": "sampler.draws",
    "tune": "sampler.tune",
    "chains": "sampler.chains",
}
#: The spec keys that ``fit`` sets from its flags (the others set a field directly).
FIT_KEYS: dict[str, str] = {"time": "model.time"}
#: Per command, the spec keys its flags set (by the flag's destination).
SPEC_KEYS: dict[str, Mapping[str, str | tuple[str, ...]]] = {
    "validate": {**ROLE_KEYS, **DESIGN_KEYS},
    "summarize": {**ROLE_KEYS, **DESIGN_KEYS},
    "estimates": ESTIMATE_KEYS,
    "demo": DEMO_KEYS,
    "fit": FIT_KEYS,
    "rolling-backtest": {
        **FIT_KEYS,
        "origin": "analysis.rolling_backtest.origins",
        "draws": "analysis.rolling_backtest.draws",
        "tune": "analysis.rolling_backtest.tune",
        "chains": "analysis.rolling_backtest.chains",
    },
}

_PARAMETER = re.compile(r"[Tt]he '(\w+)' parameter(?:'s)?(?: of [\w.]+)?")
_GIVEN_AS = re.compile(r"\(given as '(\w+)'\)")


def command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Each option of ``command`` by its destination: ``{"treated_value": "--treated-value"}``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return {
                a.dest: max(a.option_strings, key=len)
                for a in sub._actions
                if a.option_strings and a.dest != "help"
            }
    return {}


def as_flags(
    message: str, flags: Mapping[str, str], spec_keys: Mapping[str, str | tuple[str, ...]]
) -> str:
    """``message`` with the parameters and spec keys that flags set named by the flag.

    ``flags`` maps an option's destination to its flag (:func:`command_flags`),
    ``spec_keys`` a destination to the spec key it sets (or the keys, one per
    design that takes a design option). Only names the command
    has as options are rewritten; a message about anything else is unchanged.
    """

    def parameter(match: re.Match[str]) -> str:
        flag = flags.get(match.group(1))
        return flag if flag is not None else match.group(0)

    def given_as(match: re.Match[str]) -> str:
        flag = flags.get(match.group(1))
        return f"(given as {flag})" if flag is not None else match.group(0)

    text = _PARAMETER.sub(parameter, message)
    text = _GIVEN_AS.sub(given_as, text)
    for dest, keys in spec_keys.items():
        flag = flags.get(dest)
        if flag is None:
            continue
        for key in (keys,) if isinstance(keys, str) else keys:
            section, _, name = key.rpartition(".")
            # "[columns.directions].a" names one entry of --direction: "--direction a".
            text = re.sub(rf"\[{re.escape(key)}\]\.", f"{flag} ", text)
            # Whole key names only: "[data].exposure" is not the start of "[data].exposure_values".
            text = re.sub(rf"\[{re.escape(section)}\]\.{re.escape(name)}\b", flag, text)
    for dest, flag in flags.items():
        if "_" in dest:  # a bare Python name ("lower min_users_per_arm"); plain words stay
            text = re.sub(rf"(?<![\w'.-]){re.escape(dest)}\b", flag, text)
    if text != message:
        text = re.sub(r"^(options|command-line): ", "", text)
    return text
