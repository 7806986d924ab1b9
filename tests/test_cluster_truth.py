"""A proxy model fitted on a cluster-randomized history, judged against exact truth.

Issue 23, point 6, second bullet. Two workspace worlds (seeds 1 and 2, 40
experiments x 60 workspaces, ICC 0.3, spillover), summarized with one cell per
experiment, are fitted twice each with the default model (one run of 4 chains x
500 draws, no follow-up runs): with the
joint cluster-robust covariance (``cluster="workspace"``) and with the
user-level covariance of the same direct effect (each user their own cluster).
The fit's 90% interval of each experiment's true long-term effect
(``ProxyFit.latent_effects``) is compared with the simulator's exact in-sample
``experiment_effect``.

Why this check, and why one cell per experiment:

- with segment cells, a workspace's users span several cells, so the errors of
  one experiment's cells are correlated (about 0.6); ``summarize`` estimates the
  part they share (``shared_cov``) and the model integrates it (the tests at the
  end of this module). With one cell per experiment the errors are independent
  and the clustered covariance alone decides;
- the recovered experiment effects are where the covariance decides
  calibration: with the user-level covariance the model believes each
  experiment measured to within its user-level error (about 7 times too small
  here) and its intervals hold the truth for a quarter of the experiments or less
  (seeds 1 and 2: 0.23 and 0.28; seeds 1-6 at 300 draws: 0.12-0.28), while the
  clustered fit's hold it for 0.70-0.98 (seeds 1 and 2: 0.88 and 0.82; seeds
  1-6: mean 0.85; nominal 0.90). Not all of the shortfall is the covariance's:
  the noise is large next to the spread of the true effects, so the recovered
  effects lean on the model's linear Gaussian structure, which the streaming
  world only approximates (the benchmark's 30-experiment worlds give 0.40-0.80).
  The bounds below (>= 0.70 pooled over 80 experiments; <= 0.45 for the
  user-level fit, and a gap of >= 0.3) fail when the clustered covariance is
  the user-level one (a summarize that ignores the clusters) or when the model
  lets it make no difference;
- transport intervals do not tell the two apart: misread noise widens the
  between-experiment spread, so the user-level fit's predictive intervals are
  wider, not narrower (both hold 100% of new experiments in the benchmark).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import proxyscope as ps
from proxyscope import simulate

pytestmark = pytest.mark.slow

SEEDS = (1, 2)
CI = 0.9
USER_ID = "user_id"


def experiment_coverage(fit: ps.ProxyFit, world: simulate.WorkspaceWorld, seed: int) -> np.ndarray:
    """Per experiment, whether the fit's 90% interval of its true long-term effect holds it."""
    draws = fit.latent_effects(n_draws=400, random_seed=seed).sel(metric=fit.outcome).values
    lo, hi = np.quantile(draws, [(1 - CI) / 2, (1 + CI) / 2], axis=0)
    truth = (
        world.truth["experiment_effect"]
        .sel(metric=fit.outcome, experiment=fit.effects.experiment)
        .values
    )
    return np.asarray((truth >= lo) & (truth <= hi))


@pytest.fixture(scope="module")
def held() -> dict[str, np.ndarray]:
    """Per covariance, the experiments (both seeds) whose interval holds the truth."""
    out: dict[str, list[np.ndarray]] = {"clustered": [], "user_level": []}
    for seed in SEEDS:
        world = simulate.workspace(n_experiments=40, n_workspaces=60, seed=seed)
        users = world.users.assign(**{USER_ID: np.arange(len(world.users))})
        roles = {**world.column_roles(), "segments": ()}
        for name, cluster in (("clustered", "workspace"), ("user_level", USER_ID)):
            effects = ps.summarize(users, **{**roles, "cluster": cluster})
            with warnings.catch_warnings():
                # One run of 4 x 500 draws (no follow-up runs, to keep the test short)
                # can miss the production diagnostics bar by a little (r_hat 1.012);
                # the intervals' calibration is what is checked.
                warnings.simplefilter("ignore", ps.errors.ConvergenceWarning)
                fit = ps.ProxyModel(followups=0).fit(
                    effects, draws=500, tune=500, chains=4, random_seed=seed, progress=False
                )
                out[name].append(experiment_coverage(fit, world, seed))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def test_clustered_fit_holds_the_experiments_true_effects(held: dict[str, np.ndarray]) -> None:
    assert held["clustered"].size == 80
    assert held["clustered"].mean() >= 0.70, held["clustered"].mean()


def test_user_level_fit_is_overconfident_on_the_same_data(held: dict[str, np.ndarray]) -> None:
    assert held["user_level"].mean() <= 0.45, held["user_level"].mean()
    assert held["clustered"].mean() - held["user_level"].mean() >= 0.3


# -- segments that split workspaces: the shared error ------------------------------------

SEGMENTED_SEED = 1


def cell_coverage(fit: ps.ProxyFit, world: simulate.WorkspaceWorld, seed: int) -> float:
    """Share of cells whose 90% interval of the true long-term effect holds the simulator's
    exact in-sample cell effect."""
    draws = fit.latent_effects(n_draws=300, random_seed=seed).sel(metric=fit.outcome).values
    lo, hi = np.quantile(draws, [(1 - CI) / 2, (1 + CI) / 2], axis=0)
    effects = fit.effects
    truth = world.truth["cell_effect"].sel(metric=fit.outcome)
    cols = list(effects.segments)
    held = []
    for c in range(effects.n_cells):
        where = {col: str(effects.data[col].values[c]) for col in cols}
        value = float(truth.sel(experiment=effects.experiment[c], **where))
        held.append(lo[c] <= value <= hi[c])
    return float(np.mean(held))


@pytest.fixture(scope="module")
def segmented() -> dict[str, float]:
    """Cell coverage of the segmented clustered fit, with and without the shared error."""
    world = simulate.workspace(n_experiments=30, n_workspaces=60, seed=SEGMENTED_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ps.errors.DataWarning)  # few clusters per cell
        effects = ps.summarize(world.users, **world.column_roles())
    assert "shared_cov" in effects.data
    without = ps.CellEffects(effects.data.drop_vars("shared_cov"))
    out = {}
    for name, cells in (("shared", effects), ("independent", without)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ps.errors.ConvergenceWarning)
            fit = ps.ProxyModel(followups=0).fit(
                cells, draws=500, tune=500, chains=4, random_seed=SEGMENTED_SEED, progress=False
            )
        out[name] = cell_coverage(fit, world, SEGMENTED_SEED)
    return out


def test_the_shared_error_makes_segmented_cluster_fits_honest(segmented: dict[str, float]) -> None:
    """Workspaces span the 24 segment cells, so an experiment's cells share an error.
    With the shared error the cells' true long-term effects are covered near the
    nominal rate; taking the cells' errors as independent, the model reads the shared
    noise as experiment effects and covers less than half (benchmarks/
    bench_cluster_model.py, 5 seeds: see the closing note of issue 23)."""
    assert segmented["shared"] >= 0.75, segmented
    assert segmented["independent"] <= 0.6, segmented
    assert segmented["shared"] - segmented["independent"] >= 0.25, segmented
