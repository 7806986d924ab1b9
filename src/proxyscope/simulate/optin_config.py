"""Settings of the simulated opt-in world: a frozen dataclass that fails closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built (like
:class:`~proxyscope.simulate.WorkspaceConfig`, whose segment mix, failure
cohort and experiment sds it shares).
"""

from __future__ import annotations

import dataclasses

from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import (
    Bound,
    FailureCohort,
    check_mix_and_cohort,
    set_ints,
    set_numbers,
)
from proxyscope.simulate.mix import SegmentMix

_OWNER = "OptinConfig"


@dataclasses.dataclass(frozen=True)
class OptinConfig:
    """Settings of :func:`proxyscope.simulate.optin_world.optin`.

    Parameters
    ----------
    n_experiments : int
        Past opt-in launches (>= 1).
    users_per_experiment : int
        Users of each experiment (>= 20).
    segments : tuple of str
        The segment columns whose crossing makes the cells of the truth and of
        ``column_roles()`` (some of "region", "device", "tenure", each once;
        may be empty). Default ("device", "tenure"): 6 cells per experiment.
    optin_rate : float
        Opt-in probability of a user at the centre of the prior-engagement
        index, in (0, 1).
    selection : float
        Log-odds of opting in per unit of the prior-engagement index (>= 0;
        0 is a randomized opt-in).
    hidden_confounding : float
        Log-odds of opting in per sd of the user's latent satisfaction, which
        drives every metric and is not among the covariates (finite; 0 keeps
        selection on observables).
    heterogeneity : float
        Per sd of latent engagement, added to the treatment's shift of the
        long-term logit (times 8 to early_watch_min, times 0.4 to early_starts),
        so heavy users gain more and the ATT differs from the ATE (finite).
    seed : int
        Seed (>= 0) of the world's random stream.
    mix, cohort, exp_tau_sd, exp_bias_sd
        As in :class:`~proxyscope.simulate.StreamingConfig`.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_experiments: int = 20
    users_per_experiment: int = 4000
    segments: tuple[str, ...] = (sc.DEVICE, sc.TENURE)
    optin_rate: float = 0.3
    selection: float = 0.8
    hidden_confounding: float = 0.0
    heterogeneity: float = 0.1
    seed: int = 7
    mix: SegmentMix = dataclasses.field(default_factory=SegmentMix)
    cohort: FailureCohort = dataclasses.field(default_factory=FailureCohort)
    exp_tau_sd: float = 0.12
    exp_bias_sd: float = 0.08

    def __post_init__(self) -> None:
        set_ints(self, _OWNER, (("n_experiments", 1), ("users_per_experiment", 20), ("seed", 0)))
        segs = self.segments
        if (
            isinstance(segs, str)
            or not isinstance(segs, tuple | list)
            or any(s not in sc.SEGMENT_COLUMNS for s in segs)
            or len(set(segs)) != len(segs)
        ):
            raise ParameterError(
                f"{_OWNER}.segments: must be a tuple of distinct segment columns among "
                f"{list(sc.SEGMENT_COLUMNS)}; got {segs!r}."
            )
        object.__setattr__(self, "segments", tuple(segs))
        bounds: dict[str, Bound] = {
            "optin_rate": (0.0, 1.0, True, True),
            "selection": (0.0, None, False, False),
            "hidden_confounding": (None, None, False, False),
            "heterogeneity": (None, None, False, False),
        }
        set_numbers(self, _OWNER, bounds)
        check_mix_and_cohort(self, _OWNER)
