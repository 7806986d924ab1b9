"""shared_cov: the part of clustered cells' errors every cell of an experiment shares.

Against a per-user computation in plain loops; across engines; through save/load,
subset and concat; its checks; and on the simulated workspace world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from conftest import ENGINES

from proxyscope import simulate
from proxyscope.data import CellEffects, summarize
from proxyscope.data.exposure import spillover_effects
from proxyscope.errors import DataError, DataWarning

METRICS = ["y", "p_up", "p_down"]
SIGNS = np.array([1.0, 1.0, -1.0])  # p_down is "lower is better"
ROLES: dict[str, Any] = {
    "experiment": "exp",
    "treatment": "treated",
    "outcome": "y",
    "proxies": ["p_up", "p_down"],
    "segments": ["seg"],
    "directions": {"p_down": "lower"},
    "cluster": "team",
}
MIN_USERS = 10
FEW = "fewer than 30 clusters"
DROPPED = "dropped"
SPAN = "span several segment cells"
SHARED = "shared_cov"


def make_teams(seed: int = 5) -> pd.DataFrame:
    """4 experiments, ~40 teams each, randomized by team; a team's users fall in every segment.

    Experiments 1-3 have 3, 4 and 4 segment cells (experiment 2 also a cell "z" of
    8 users, dropped below min_users_per_arm); experiment 4 one big cell "a" and a
    cell "z" that is dropped, so one kept cell. A team effect moves every metric
    (correlated across metrics). Control users are "spillover" with probability 0.3.
    """
    rng = np.random.default_rng(seed)
    parts = []
    cells = {1: "abc", 2: "abcd", 3: "abcd", 4: "a"}
    for exp, segs in cells.items():
        n_teams = int(rng.integers(36, 45))
        arm = rng.permutation(np.arange(n_teams) % 2)
        for g in range(n_teams):
            size = int(rng.integers(6, 30))
            base = rng.multivariate_normal(
                np.zeros(3), [[1, 0.5, -0.3], [0.5, 1, 0.2], [-0.3, 0.2, 1]]
            )
            t = np.full(size, arm[g])
            spill = (t == 0) & (rng.random(size) < 0.3)
            lift = 0.2 * t + 0.05 * spill
            noise = rng.normal(size=(size, 3))
            parts.append(
                pd.DataFrame(
                    {
                        "exp": exp,
                        "seg": rng.choice(np.array(list(segs)), size),
                        "treated": t,
                        "team": g,
                        "exposure": np.where(
                            t == 1, "direct", np.where(spill, "spillover", "pure_control")
                        ),
                        "y": 1.5 * base[0] + lift + noise[:, 0],
                        "p_up": 100 + 20 * base[1] + 30 * lift + 25 * noise[:, 1],
                        "p_down": 0.1 + 0.01 * base[2] - 0.01 * lift + 0.01 * noise[:, 2],
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    # A few users in cell "z" of experiments 2 and 4 (both arms): dropped cells.
    for exp in (2, 4):
        rows = frame.index[frame["exp"] == exp][::50][:8]
        frame.loc[rows, "seg"] = "z"
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_teams()


def run(data: Any, **kw: Any) -> CellEffects:
    """summarize with ROLES, expecting the few-clusters and dropped-cells warnings."""
    with pytest.warns(DataWarning, match=FEW), pytest.warns(DataWarning, match=DROPPED):
        return summarize(data, **{**ROLES, "min_users_per_arm": MIN_USERS, **kw})


# -- the independent computation -------------------------------------------------------


def reference(frame: pd.DataFrame, exposure: bool) -> dict[str, Any]:
    """U_e per kept cell, residuals and unexplained inflation, from the user rows.

    Influence function of user i in cell c: +(x_i − x̄_T)/n_T if treated (direct),
    −(x_i − x̄_C)/n_C if control (pure control); 0 for a spillover user (whose team
    still counts as a cluster). Summed per team per cell: s_gc.
    """
    shared: dict[tuple[int, str], np.ndarray] = {}
    residual, unexplained = [], []
    for exp, users in frame.groupby("exp"):
        scores: dict[str, dict[int, np.ndarray]] = {}
        own: dict[str, np.ndarray] = {}
        size: dict[str, int] = {}
        for seg, cell in users.groupby("seg"):
            if exposure:
                plus, minus = cell.exposure == "direct", cell.exposure == "pure_control"
            else:
                plus, minus = cell.treated == 1, cell.treated == 0
            if plus.sum() < MIN_USERS or minus.sum() < MIN_USERS:
                continue  # a dropped cell takes no part
            psi = np.zeros((len(cell), 3))
            x = cell[METRICS].to_numpy()
            for rows, sign in ((plus.to_numpy(), 1.0), (minus.to_numpy(), -1.0)):
                psi[rows] = sign * (x[rows] - x[rows].mean(axis=0)) / rows.sum()
            teams = cell["team"].to_numpy()
            scores[seg] = {int(g): psi[teams == g].sum(axis=0) for g in np.unique(teams)}
            n_g = len(scores[seg])
            own[seg] = n_g / (n_g - 1) * sum(np.outer(s, s) for s in scores[seg].values())
            size[seg] = int(plus.sum() + minus.sum())
        segs = list(scores)
        k = len(segs)
        n_teams = len(set().union(*(set(scores[s]) for s in segs)))
        f = n_teams / (n_teams - 1)

        pairs = [(a, b) for a in segs for b in segs if a != b]
        blocks = {  # the CR1 cross-cell blocks S_cc' = f sum_g s_gc s_gc'^T
            (a, b): f
            * sum(
                (np.outer(scores[a][g], scores[b][g]) for g in set(scores[a]) & set(scores[b])),
                np.zeros((3, 3)),
            )
            for a, b in pairs
        }
        u = np.zeros((3, 3))
        if k >= 2:
            mean = sum(blocks[a, b] for a, b in pairs) / len(pairs)
            scale = np.sqrt(np.mean([np.diag(own[s]) for s in segs], axis=0))
            outer = np.outer(scale, scale)
            w, v = np.linalg.eigh(mean / outer)
            u = (v * np.maximum(w, 0)) @ v.T * outer  # PSD-projected, not shrunk
            fit = sum(np.sum(((blocks[a, b] - u) / outer) ** 2) for a, b in pairs)
            total = sum(np.sum((blocks[a, b] / outer) ** 2) for a, b in pairs)
            residual.append(np.sqrt(fit / total))
        weight = {s: size[s] / sum(size.values()) for s in segs}
        diag_own = sum(weight[s] ** 2 * np.diag(own[s]) for s in segs)
        actual = diag_own + sum(
            (weight[a] * weight[b] * np.diag(blocks[a, b]) for a, b in pairs), np.zeros(3)
        )
        implied = diag_own + sum((weight[a] * weight[b] for a, b in pairs), 0.0) * np.diag(u)
        unexplained.append(actual / implied)
        for s in segs:
            shared[(int(exp), s)] = u * np.outer(SIGNS, SIGNS)
    return {
        "shared": shared,
        "residual": float(np.median(residual)),
        "unexplained": np.median(unexplained, axis=0),
    }


@pytest.mark.parametrize("exposure", [None, "exposure"])
def test_shared_cov_equals_the_per_user_computation(
    frame: pd.DataFrame, exposure: str | None
) -> None:
    got = run(frame, engine="pandas", exposure=exposure)
    want = reference(frame, exposure is not None)
    assert got.dropped[["experiment", "seg"]].values.tolist() == [[2, "z"], [4, "z"]]
    cells = got.cells()
    assert [(int(e), s) for e, s in zip(cells["experiment"], cells["seg"], strict=True)] == list(
        want["shared"]
    )
    shared = got.variable(SHARED)
    assert shared.shape == (got.n_cells, 3, 3)
    for c, key in enumerate(want["shared"]):
        u = want["shared"][key]
        scale = np.sqrt(np.outer(np.diag(u), np.diag(u))) + 1e-300
        np.testing.assert_array_less(np.abs(shared[c] - u), 1e-10 * scale + 1e-300)
    meta = got.meta["cluster"]
    assert meta["shared_noise"]["experiments_with_several_cells"] == 3
    assert meta["shared_noise"]["experiments_with_shared"] == 3
    assert meta["shared_noise"]["median_residual"] == pytest.approx(want["residual"], rel=1e-9)
    left = meta["experiment_variance_inflation_unexplained"]
    assert [left[m] for m in METRICS] == pytest.approx(want["unexplained"], rel=1e-9)


def test_the_down_metric_is_flipped_like_noise_cov(frame: pd.DataFrame) -> None:
    """shared_cov in the cells' (good) direction: D U D, as noise_cov is D S D."""
    got = run(frame, engine="pandas")
    natural = run(frame, engine="pandas", directions={"p_down": "higher"})
    flip = np.outer(SIGNS, SIGNS)
    np.testing.assert_array_equal(got.variable(SHARED), natural.variable(SHARED) * flip)
    np.testing.assert_array_equal(got.noise_cov, natural.noise_cov * flip)
    several = got.experiment != 4
    assert (np.abs(got.variable(SHARED)[several, 0, 2]) > 0).all()


def test_shared_parts_are_psd_and_one_kept_cell_or_no_segments_share_nothing(
    frame: pd.DataFrame,
) -> None:
    got = run(frame, engine="duckdb")
    shared, noise = got.variable(SHARED), got.noise_cov
    ratios = []
    for c in range(got.n_cells):
        assert np.linalg.eigvalsh(shared[c]).min() >= -1e-12 * np.abs(shared[c]).max()
        ratios.append(scipy.linalg.eigh(shared[c], noise[c], eigvals_only=True).max())
    # Not shrunk: the reported ratio is the largest lambda_max(S_c^-1 U_e) of each experiment.
    largest = got.meta["cluster"]["shared_noise"]["median_largest_ratio"]
    per_exp = pd.Series(ratios).groupby(np.asarray(got.experiment)).max()
    assert largest == pytest.approx(float(np.median(per_exp[per_exp > 0])), rel=1e-9)
    lone = got.experiment == 4
    assert lone.sum() == 1 and not shared[lone].any()
    assert shared[~lone].any(axis=(1, 2)).all()
    with pytest.warns(DataWarning, match=FEW):
        flat = summarize(frame, **{**ROLES, "segments": ()})
    assert SHARED not in flat.data
    assert not flat.variable(SHARED).any()
    assert "shared_noise" not in flat.meta["cluster"]


def test_spillover_cells_share_nothing(frame: pd.DataFrame) -> None:
    got = run(frame, engine="pandas", exposure="exposure")
    assert got.variable(SHARED).any()
    spill = spillover_effects(got)
    assert SHARED not in spill.data and not spill.variable(SHARED).any()


def _input(engine: str, frame: pd.DataFrame, request: pytest.FixtureRequest) -> Any:
    if engine == "spark":
        return request.getfixturevalue("spark").createDataFrame(frame)
    return frame


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_agree(engine: str, frame: pd.DataFrame, request: pytest.FixtureRequest) -> None:
    ref = run(frame, engine="pandas")
    got = run(_input(engine, frame, request), engine=engine)
    np.testing.assert_allclose(got.variable(SHARED), ref.variable(SHARED), rtol=1e-9, atol=1e-18)
    mine, theirs = got.meta["cluster"]["shared_noise"], ref.meta["cluster"]["shared_noise"]
    assert mine.pop("method") == theirs.pop("method")
    assert mine == pytest.approx(theirs, rel=1e-9)


# -- through save/load, subset and concat -------------------------------------------------


def test_save_load_subset_and_concat_keep_it(frame: pd.DataFrame, tmp_path: Path) -> None:
    got = run(frame, engine="pandas")
    shared = got.variable(SHARED)
    back = CellEffects.load(got.save(tmp_path / "cells.nc"))
    np.testing.assert_array_equal(back.variable(SHARED), shared)
    assert back.fingerprint() == got.fingerprint()
    picked = [5, 0, 3]
    np.testing.assert_array_equal(got.subset_cells(picked).variable(SHARED), shared[picked])
    exp3 = got.experiment == 3
    np.testing.assert_array_equal(got.subset([3]).variable(SHARED), shared[exp3])
    without = CellEffects(got.subset([3]).data.drop_vars(SHARED))
    both = CellEffects.concat([got.subset([1, 2]), without])
    first = np.isin(got.experiment, [1, 2])
    np.testing.assert_array_equal(both.variable(SHARED)[: first.sum()], shared[first])
    assert not both.variable(SHARED)[first.sum() :].any()  # filled with 0: nothing shared


# -- checks ----------------------------------------------------------------------------------


def _with(effects: CellEffects, edit: Any) -> None:
    data = effects.data.copy(deep=True)
    values = data[SHARED].values
    edit(values, effects)
    CellEffects(data)


@pytest.fixture(scope="module")
def valid(frame: pd.DataFrame) -> CellEffects:
    return run(frame, engine="pandas")


def test_nonfinite_or_asymmetric_shared_cov_is_an_error(valid: CellEffects) -> None:
    cell = r"'shared_cov' in cell \(experiment 1, segment 'b'\)"

    def nan(v: np.ndarray, _: CellEffects) -> None:
        v[1, 0, 2] = np.nan

    with pytest.raises(DataError, match=cell + r" holds nan for \('y', 'p_down'\)"):
        _with(valid, nan)

    def skew(v: np.ndarray, _: CellEffects) -> None:
        v[1, 0, 1] += abs(v[1, 0, 1]) + 1.0

    with pytest.raises(
        DataError, match=cell + r" is not symmetric: its entries for \('y', 'p_up'\)"
    ):
        _with(valid, skew)


def test_shared_cov_that_is_not_psd_is_an_error(valid: CellEffects) -> None:
    def negative(v: np.ndarray, e: CellEffects) -> None:
        bad = v[0].copy()
        bad[0, 0] = -bad[0, 0] - 1.0
        v[e.experiment == 1] = bad

    with pytest.raises(
        DataError,
        match=r"'shared_cov' in cell \(experiment 1, segment 'a'\) is not positive semidefinite: "
        r"its smallest eigenvalue is -\d",
    ):
        _with(valid, negative)


def test_shared_cov_that_differs_within_an_experiment_is_an_error(valid: CellEffects) -> None:
    def halve(v: np.ndarray, e: CellEffects) -> None:
        v[np.flatnonzero(e.experiment == 2)[2]] *= 0.5

    with pytest.raises(
        DataError,
        match=r"'shared_cov' in cell \(experiment 2, segment 'c'\) differs from the one in cell "
        r"\(experiment 2, segment 'a'\) by up to",
    ):
        _with(valid, halve)


# -- the simulated workspace world ------------------------------------------------------------


def test_workspace_world_the_shared_part_explains_the_inflation() -> None:
    """Workspaces spread over 24 segment cells: the experiment's effect variance is ~12x
    what the cells' own covariances add up to; counting the shared part, ~1x, so the
    cross-cell warning does not fire (measured on this world: raw 12.3-13.1,
    unexplained 0.99-1.04; the largest lambda_max(S_c^-1 U_e), median over the
    experiments, 1.83: with about 38 clusters a cell, some cells' own estimates fall
    below the shared part in some direction)."""
    world = simulate.workspace(n_experiments=8, n_workspaces=40, seed=3)
    roles = world.column_roles()
    roles.pop("exposure")
    with (
        pytest.warns(DataWarning, match=FEW),
        pytest.warns(DataWarning, match=DROPPED) as record,
    ):
        got = summarize(world.users, engine="pandas", **roles)
    assert not any(SPAN in str(r.message) for r in record)
    meta = got.meta["cluster"]
    raw = meta["experiment_variance_inflation"]
    left = meta["experiment_variance_inflation_unexplained"]
    for m in raw:
        assert raw[m] > 8
        assert 0.9 < left[m] < 1.15
    assert 1.0 < meta["shared_noise"]["median_largest_ratio"] < 3.0
    assert meta["shared_noise"]["experiments_with_shared"] == 8
