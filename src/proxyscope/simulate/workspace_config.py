"""Settings of the simulated workspace world: a frozen dataclass that fails closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built (like
:class:`~proxyscope.simulate.StreamingConfig`, whose segment mix, failure
cohort and experiment sds it shares).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import (
    Bound,
    FailureCohort,
    check_mix_and_cohort,
    is_int,
    set_ints,
    set_numbers,
)
from proxyscope.simulate.mix import FrozenMapping, SegmentMix, check_number

_OWNER = "WorkspaceConfig"


def _per_metric(
    name: str, value: Any, default: float, low: float, high: float, *, open_high: bool
) -> FrozenMapping[str]:
    """One number per metric from a single number or a mapping (unnamed metrics: ``default``)."""
    if isinstance(value, Mapping):
        for key in value:
            if key not in sc.METRICS:
                hint = suggestion(key, sc.METRICS) if isinstance(key, str) else ""
                raise ParameterError(
                    f"{_OWNER}.{name}: unknown metric {key!r}; expected some of "
                    f"{list(sc.METRICS)}.{hint}"
                )
        given = {m: value.get(m, default) for m in sc.METRICS}
    else:
        given = dict.fromkeys(sc.METRICS, value)
    return FrozenMapping(
        {
            m: check_number(f"{_OWNER}.{name}[{m!r}]", v, low, high, open_high=open_high)
            for m, v in given.items()
        }
    )


@dataclasses.dataclass(frozen=True)
class WorkspaceConfig:
    """Settings of :func:`proxyscope.simulate.workspace`.

    Parameters
    ----------
    n_experiments : int
        Past experiments (>= 1).
    n_workspaces : int
        Workspaces per experiment (>= 4); half of them (rounded down) are
        treated in each experiment.
    workspace_size : tuple of two ints
        (smallest, largest) number of users per workspace (1 <= smallest <=
        largest); sizes are drawn uniformly in that range, then scaled by a
        factor near 1 so that an experiment's workspaces hold exactly its users.
    icc : float or mapping of metric to float
        Intra-workspace correlation of each metric under control: the share
        of the metric's within-experiment variance that is the workspace
        baseline, in [0, 1). A mapping may name some metrics; the others get 0.3.
    baseline_corr : float
        Correlation of the workspace baselines of every pair of metrics, in
        their good directions (rebuffer_rate's negated), in (-0.25, 1).
    spillover_share : float
        Probability that a control user collaborates with treated workspaces
        and is spillover-exposed, in [0, 1); drawn independently of everything
        else, so independent of the user's outcomes.
    spillover_fraction : float or mapping of metric to float
        The spillover effect of an exposed user as a fraction of their own
        direct effect, per metric, in [-1, 1] (unnamed metrics: 0.25).
    seed : int
        Seed (>= 0) of both random streams (the streaming world's and the
        workspaces').
    mix, cohort, exp_tau_sd, exp_bias_sd
        As in :class:`~proxyscope.simulate.StreamingConfig`.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_experiments: int = 40
    n_workspaces: int = 60
    workspace_size: tuple[int, int] = (20, 300)
    icc: float | Mapping[str, float] = 0.3
    baseline_corr: float = 0.5
    spillover_share: float = 0.25
    spillover_fraction: float | Mapping[str, float] = 0.25
    seed: int = 7
    mix: SegmentMix = dataclasses.field(default_factory=SegmentMix)
    cohort: FailureCohort = dataclasses.field(default_factory=FailureCohort)
    exp_tau_sd: float = 0.12
    exp_bias_sd: float = 0.08

    def __post_init__(self) -> None:
        set_ints(self, _OWNER, (("n_experiments", 1), ("n_workspaces", 4), ("seed", 0)))
        size = self.workspace_size
        if (
            not isinstance(size, tuple | list)
            or len(size) != 2
            or not all(is_int(v) for v in size)
            or not 1 <= size[0] <= size[1]
        ):
            raise ParameterError(
                f"{_OWNER}.workspace_size: must be two integers (smallest, largest) with "
                f"1 <= smallest <= largest; got {size!r}."
            )
        object.__setattr__(self, "workspace_size", (int(size[0]), int(size[1])))
        low_corr = -1.0 / (len(sc.METRICS) - 1)
        bounds: dict[str, Bound] = {
            "baseline_corr": (low_corr, 1.0, True, True),
            "spillover_share": (0.0, 1.0, False, True),
        }
        set_numbers(self, _OWNER, bounds)
        object.__setattr__(self, "icc", _per_metric("icc", self.icc, 0.3, 0.0, 1.0, open_high=True))
        fraction = _per_metric(
            "spillover_fraction", self.spillover_fraction, 0.25, -1.0, 1.0, open_high=False
        )
        object.__setattr__(self, "spillover_fraction", fraction)
        check_mix_and_cohort(self, _OWNER)

    def icc_array(self) -> np.ndarray:
        """The intra-workspace correlation of each metric, in ``METRICS`` order."""
        icc = cast(Mapping[str, float], self.icc)  # normalized in __post_init__
        return np.array([icc[m] for m in sc.METRICS])

    def fraction_array(self) -> np.ndarray:
        """The spillover fraction of each metric, in ``METRICS`` order."""
        fraction = cast(Mapping[str, float], self.spillover_fraction)  # normalized
        return np.array([fraction[m] for m in sc.METRICS])

    def baseline_correlation(self) -> np.ndarray:
        """Correlation matrix of the workspace baselines in the metrics' raw directions."""
        m = len(sc.METRICS)
        corr = np.full((m, m), self.baseline_corr)
        np.fill_diagonal(corr, 1.0)
        sign = np.array([-1.0 if x in sc.LOWER_IS_BETTER else 1.0 for x in sc.METRICS])
        return np.asarray(corr * np.outer(sign, sign))
