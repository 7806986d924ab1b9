"""The workspace world: users randomized by workspace, workspace baselines, spillover, exact truth.

The truth is checked against plain groupbys on the potential outcomes, the
baselines against a nested one-way ANOVA of the intra-workspace correlation,
and the potential outcomes against the streaming world they come from.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from proxyscope import simulate
from proxyscope.errors import ParameterError
from proxyscope.simulate import WorkspaceConfig

SEGMENTS = ["region", "device", "tenure"]
METRICS = ["long_retained", "early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
ICC = {"long_retained": 0.1, "early_watch_min": 0.5, "early_starts": 0.3, "early_ctr": 0.2}
FRACTION = {"early_watch_min": 0.5, "early_ctr": -0.2}


@pytest.fixture(scope="module")
def world() -> simulate.WorkspaceWorld:
    """40 experiments x 60 workspaces (about 385,000 users), per-metric ICC and fractions."""
    return simulate.workspace(
        n_experiments=40, n_workspaces=60, icc=ICC, spillover_fraction=FRACTION, seed=3
    )


def good(metric: str) -> float:
    return -1.0 if metric == "rebuffer_rate" else 1.0


def keyed(world: simulate.WorkspaceWorld, values: dict[str, Any]) -> pd.DataFrame:
    users = world.users
    frame = pd.DataFrame(
        {"experiment": users["exp_id"].to_numpy()}
        | {s: users[s].astype(str).to_numpy() for s in SEGMENTS}
    )
    for name, value in values.items():
        frame[name] = value
    return frame


# -- reproducibility and the streaming world underneath ------------------------------


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = simulate.workspace(n_experiments=3, n_workspaces=6, seed=11)
    b = simulate.workspace(WorkspaceConfig(n_experiments=3, n_workspaces=6, seed=11))
    c = simulate.workspace(n_experiments=3, n_workspaces=6, seed=12)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.potential_outcomes, b.potential_outcomes)
    pd.testing.assert_frame_equal(a.workspaces, b.workspaces)
    assert a.truth.identical(b.truth)
    assert a.spillover_truth.identical(b.spillover_truth)
    assert not a.users["early_watch_min"].equals(c.users["early_watch_min"])


def test_potential_outcomes_are_the_streaming_worlds() -> None:
    flat = simulate.workspace(n_experiments=5, n_workspaces=8, icc=0.0, seed=5)
    stream = simulate.streaming(n_users=len(flat.users), n_experiments=5, seed=5)
    for column in ("exp_id", *SEGMENTS, "failure_cohort"):
        pd.testing.assert_series_equal(flat.users[column], stream.users[column])
    for column in stream.potential_outcomes.columns:
        np.testing.assert_array_equal(
            flat.potential_outcomes[column].to_numpy(), stream.potential_outcomes[column].to_numpy()
        )
    assert flat.streaming_config.n_users == len(flat.users)


def test_baselines_shift_both_potential_outcomes_and_leave_the_truth() -> None:
    base = simulate.workspace(n_experiments=4, n_workspaces=10, seed=9)
    flat = simulate.workspace(n_experiments=4, n_workspaces=10, icc=0.0, seed=9)
    pd.testing.assert_frame_equal(
        base.users[["workspace", "treatment"]], flat.users[["workspace", "treatment"]]
    )
    for metric in METRICS:
        shift = base.workspaces[f"baseline_{metric}"].to_numpy()[base.users["workspace"]]
        assert np.abs(shift).max() > 0
        for suffix in ("_0", "_1", "_s"):
            got = (
                base.potential_outcomes[metric + suffix] - flat.potential_outcomes[metric + suffix]
            )
            np.testing.assert_allclose(got, shift, rtol=0, atol=1e-12)
        np.testing.assert_allclose(base.users[metric] - flat.users[metric], shift, atol=1e-12)
    np.testing.assert_allclose(
        base.truth["cell_effect"], flat.truth["cell_effect"], rtol=1e-9, atol=1e-12
    )


# -- assignment and exposure ------------------------------------------------------------


def test_each_workspace_is_in_one_experiment_and_one_arm(world: simulate.WorkspaceWorld) -> None:
    users, table = world.users, world.workspaces
    per_ws = users.groupby("workspace").agg(
        experiments=("exp_id", "nunique"),
        arms=("treatment", "nunique"),
        experiment=("exp_id", "first"),
        treatment=("treatment", "first"),
        users=("exp_id", "size"),
    )
    assert (per_ws["experiments"] == 1).all() and (per_ws["arms"] == 1).all()
    assert len(per_ws) == 40 * 60
    pd.testing.assert_series_equal(per_ws["experiment"], table["experiment"], check_names=False)
    pd.testing.assert_series_equal(per_ws["treatment"], table["treatment"], check_names=False)
    pd.testing.assert_series_equal(per_ws["users"], table["users"], check_names=False)
    treated = table.groupby("experiment")["treatment"].sum()
    assert (treated == 30).all()
    # sizes drawn in 20-300, then scaled by the experiment's factor near 1
    assert table["users"].between(15, 380).all() and table["users"].std() > 60
    # a workspace's users span segments: a workspace appears in several cells
    cells = users.groupby("workspace")[SEGMENTS].apply(lambda g: len(g.drop_duplicates()))
    assert cells.median() >= 10


def test_exposure_share_and_roles(world: simulate.WorkspaceWorld) -> None:
    users = world.users
    exposure = users["exposure"].astype(str)
    assert list(users["exposure"].cat.categories) == ["direct", "spillover", "pure_control"]
    assert ((exposure == "direct") == (users["treatment"] == 1)).all()
    control = exposure[users["treatment"] == 0]
    share = float((control == "spillover").mean())
    se = np.sqrt(0.25 * 0.75 / len(control))
    assert abs(share - 0.25) < 5 * se
    # exposure is independent of the outcomes: Y(0) (baselines removed) alike in both groups
    po = world.potential_outcomes
    for metric in METRICS:
        shift = world.workspaces[f"baseline_{metric}"].to_numpy()[users["workspace"]]
        y0 = (po[f"{metric}_0"] - shift)[users["treatment"] == 0]
        spill, pure = y0[control == "spillover"], y0[control == "pure_control"]
        diff_se = np.sqrt(spill.var() / len(spill) + pure.var() / len(pure))
        assert abs(spill.mean() - pure.mean()) < 4.5 * diff_se, metric


def test_observed_outcome_is_the_exposures_potential_outcome(
    world: simulate.WorkspaceWorld,
) -> None:
    users, po = world.users, world.potential_outcomes
    suffix = (
        users["exposure"].astype(str).map({"direct": "_1", "spillover": "_s", "pure_control": "_0"})
    )
    for metric in METRICS:
        for end in ("_0", "_1", "_s"):
            rows = (suffix == end).to_numpy()
            np.testing.assert_array_equal(users[metric][rows], po[metric + end][rows])
        fraction = FRACTION.get(metric, 0.25)
        np.testing.assert_allclose(
            po[f"{metric}_s"] - po[f"{metric}_0"],
            fraction * (po[f"{metric}_1"] - po[f"{metric}_0"]),
            rtol=0,
            atol=1e-12,
        )


# -- truth ------------------------------------------------------------------------------


def test_direct_truth_equals_a_groupby_of_potential_outcomes(
    world: simulate.WorkspaceWorld,
) -> None:
    po = world.potential_outcomes
    effects = {
        m: (po["p_long_1"] - po["p_long_0"])
        if m == "long_retained"
        else good(m) * (po[f"{m}_1"] - po[f"{m}_0"])
        for m in METRICS
    }
    frame = keyed(world, effects | {"treated": world.users["treatment"].to_numpy()})
    grouped = frame.groupby(["experiment", *SEGMENTS])
    want = grouped[METRICS].mean()
    got = world.truth["cell_effect"].to_series().unstack("metric").dropna(how="all")
    got.index = got.index.set_names(["experiment", *SEGMENTS])
    pd.testing.assert_frame_equal(
        got.sort_index()[METRICS], want.sort_index(), check_names=False, rtol=1e-9, atol=1e-12
    )
    counts = world.truth["cell_users"].to_series()
    counts = counts[counts > 0].sort_index()
    assert counts.sum() == len(frame)
    np.testing.assert_array_equal(counts, grouped.size().sort_index())
    treated = world.truth["cell_treated"].to_series().loc[counts.index]
    np.testing.assert_array_equal(treated, grouped["treated"].sum().sort_index())


def test_spillover_truth_equals_a_groupby_over_exposed_users(
    world: simulate.WorkspaceWorld,
) -> None:
    po, users = world.potential_outcomes, world.users
    effects = {}
    for m in METRICS:
        if m == "long_retained":
            effects[m] = FRACTION.get(m, 0.25) * (po["p_long_1"] - po["p_long_0"])
        else:
            effects[m] = good(m) * (po[f"{m}_s"] - po[f"{m}_0"])
    frame = keyed(world, effects)[users["exposure"].astype(str).to_numpy() == "spillover"]
    want = frame.groupby(["experiment", *SEGMENTS])[METRICS].mean().sort_index()
    truth = world.spillover_truth
    got = truth["spillover_effect"].to_series().unstack("metric").dropna(how="all")
    got.index = got.index.set_names(["experiment", *SEGMENTS])
    pd.testing.assert_frame_equal(
        got.sort_index()[METRICS], want, check_names=False, rtol=1e-9, atol=1e-12
    )
    n = truth["spillover_users"].to_series()
    assert n.sum() == len(frame)
    assert (
        n[n > 0].sort_index().tolist()
        == frame.groupby(["experiment", *SEGMENTS]).size().sort_index().tolist()
    )
    per_exp = frame.groupby("experiment")[METRICS].mean()
    np.testing.assert_allclose(
        truth["experiment_spillover_effect"].values, per_exp.to_numpy(), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(truth["spillover_fraction"], [0.25, 0.5, 0.25, -0.2, 0.25])


# -- workspace baselines ----------------------------------------------------------------


def nested_icc(y: np.ndarray, workspace: np.ndarray, experiment: np.ndarray) -> float:
    """One-way ANOVA intra-class correlation of workspaces nested in experiments."""
    frame = pd.DataFrame({"y": y, "w": workspace, "e": experiment})
    ws = frame.groupby("w").agg(n=("y", "size"), mean=("y", "mean"), e=("e", "first"))
    exp = frame.groupby("e")["y"].agg(["mean", "size"])
    k, n, e = len(ws), len(frame), len(exp)
    ssb = float((ws["n"] * (ws["mean"] - exp["mean"].loc[ws["e"]].to_numpy()) ** 2).sum())
    ssw = float(((frame["y"] - ws["mean"].loc[frame["w"]].to_numpy()) ** 2).sum())
    n0 = (n - float((ws["n"] ** 2 / exp["size"].loc[ws["e"]].to_numpy()).sum())) / (k - e)
    msb, msw = ssb / (k - e), ssw / (n - k)
    return (msb - msw) / (msb + (n0 - 1) * msw)


def test_workspace_baselines_induce_the_stated_icc(world: simulate.WorkspaceWorld) -> None:
    users = world.users
    for metric in METRICS:
        y0 = world.potential_outcomes[f"{metric}_0"].to_numpy()
        got = nested_icc(y0, users["workspace"].to_numpy(), users["exp_id"].to_numpy())
        assert got == pytest.approx(ICC.get(metric, 0.3), abs=0.03), metric
    # and on what summarize sees: the pure-control users' observed outcomes
    pure = (users["exposure"].astype(str) == "pure_control").to_numpy()
    got = nested_icc(
        users["early_watch_min"].to_numpy()[pure],
        users["workspace"].to_numpy()[pure],
        users["exp_id"].to_numpy()[pure],
    )
    assert got == pytest.approx(0.5, abs=0.04)


def test_baselines_are_correlated_in_the_good_direction(world: simulate.WorkspaceWorld) -> None:
    table = world.workspaces
    baselines = np.column_stack([good(m) * table[f"baseline_{m}"] for m in METRICS])
    corr = np.corrcoef(baselines.T)
    off = corr[~np.eye(len(METRICS), dtype=bool)]
    assert np.abs(off - 0.5).max() < 0.08
    np.testing.assert_allclose(baselines.std(axis=0), world.baseline_sd, rtol=0.06)


def test_user_level_standard_errors_are_several_times_too_small(
    world: simulate.WorkspaceWorld,
) -> None:
    """Per experiment, the realized error of direct minus pure control over the naive SE."""
    users = world.users[world.users["exposure"].astype(str) != "spillover"]
    for metric in METRICS:
        arms = users.groupby(["exp_id", "treatment"])[metric].agg(["mean", "var", "size"])
        arms = arms.unstack("treatment")
        estimate = good(metric) * (arms["mean"][1] - arms["mean"][0])
        se = np.sqrt(arms["var"][1] / arms["size"][1] + arms["var"][0] / arms["size"][0])
        truth = world.truth["experiment_effect"].sel(metric=metric).to_numpy()
        ratio = float(np.sqrt(np.mean(((estimate.to_numpy() - truth) / se.to_numpy()) ** 2)))
        assert ratio > 3, (metric, ratio)


# -- roles and settings -----------------------------------------------------------------


def test_column_roles_name_the_cluster_and_exposure(world: simulate.WorkspaceWorld) -> None:
    roles = world.column_roles()
    assert roles["cluster"] == "workspace" and roles["exposure"] == "exposure"
    assert roles["experiment"] == "exp_id" and roles["treatment"] == "treatment"
    assert roles["segments"] == SEGMENTS and roles["outcome"] == "long_retained"
    assert roles["directions"] == {"rebuffer_rate": "lower"}
    for column in (roles["experiment"], roles["cluster"], roles["exposure"], *roles["proxies"]):
        assert column in world.users.columns
    roles["cluster"] = "x"
    assert world.column_roles()["cluster"] == "workspace"
    pop = world.population_truth()
    assert pop["pop_flip_prob"].dims == ("region", "device", "tenure", "proxy")
    np.testing.assert_array_equal(pop["pop_flip_prob"], world.truth["pop_flip_prob"])


def raises(match: str) -> Any:
    return pytest.raises(ParameterError, match=re.escape(match))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_experiments": 0}, "WorkspaceConfig.n_experiments: must be an integer >= 1; got 0"),
        ({"n_workspaces": 3}, "WorkspaceConfig.n_workspaces: must be an integer >= 4; got 3"),
        ({"n_workspaces": 10.0}, "WorkspaceConfig.n_workspaces: must be an integer >= 4"),
        ({"seed": -1}, "WorkspaceConfig.seed: must be an integer >= 0; got -1"),
        ({"workspace_size": (30, 20)}, "WorkspaceConfig.workspace_size: must be two integers"),
        ({"workspace_size": (0, 20)}, "1 <= smallest <= largest; got (0, 20)"),
        ({"workspace_size": 50}, "WorkspaceConfig.workspace_size: must be two integers"),
        ({"icc": 1.0}, "WorkspaceConfig.icc['long_retained']: must be a number in [0, 1); got 1.0"),
        ({"icc": {"early_ctr": -0.1}}, "WorkspaceConfig.icc['early_ctr']: must be a number in"),
        ({"icc": {"early_watch": 0.2}}, "unknown metric 'early_watch'"),
        ({"icc": {"early_watch": 0.2}}, "Did you mean 'early_watch_min'?"),
        ({"icc": float("nan")}, "WorkspaceConfig.icc['long_retained']: must be a number"),
        ({"baseline_corr": -0.3}, "WorkspaceConfig.baseline_corr: must be a number in (-0.25, 1)"),
        ({"baseline_corr": 1.0}, "WorkspaceConfig.baseline_corr: must be a number in (-0.25, 1)"),
        ({"spillover_share": 1.0}, "WorkspaceConfig.spillover_share: must be a number in [0, 1)"),
        ({"spillover_share": True}, "WorkspaceConfig.spillover_share: must be a number"),
        ({"spillover_fraction": {"early_ctr": 1.5}}, "spillover_fraction['early_ctr']: must be"),
        ({"exp_tau_sd": 0.0}, "WorkspaceConfig.exp_tau_sd: must be a number > 0; got 0.0"),
        ({"exp_bias_sd": -1}, "WorkspaceConfig.exp_bias_sd: must be a number >= 0; got -1"),
        ({"mix": "uniform"}, "WorkspaceConfig.mix: must be a SegmentMix; got str 'uniform'"),
        ({"cohort": None}, "WorkspaceConfig.cohort: must be a FailureCohort; got NoneType"),
    ],
)
def test_config_fails_closed(options: dict[str, Any], message: str) -> None:
    with raises(message):
        WorkspaceConfig(**options)


def test_workspace_options_fail_closed() -> None:
    with raises("Unknown option 'n_workspace' of workspace"):
        simulate.workspace(n_workspace=10)
    with raises("Did you mean 'n_workspaces'?"):
        simulate.workspace(n_workspace=10)
    with raises("config must be a WorkspaceConfig; got StreamingConfig"):
        simulate.workspace(simulate.StreamingConfig())  # type: ignore[arg-type]
    with raises("WorkspaceConfig.n_workspaces: must be an integer >= 4; got 2"):
        simulate.workspace(WorkspaceConfig(), n_workspaces=2)


def test_config_is_frozen_normalized_hashable_and_picklable() -> None:
    config = WorkspaceConfig(icc={"early_ctr": 0.1}, workspace_size=[10, 40])  # type: ignore[arg-type]
    assert config.workspace_size == (10, 40)
    assert dict(config.icc) == {m: (0.1 if m == "early_ctr" else 0.3) for m in METRICS}  # type: ignore[arg-type]
    assert config.icc_array().tolist() == [0.3, 0.3, 0.3, 0.1, 0.3]
    assert hash(config) == hash(pickle.loads(pickle.dumps(config)))
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]
    corr = config.baseline_correlation()
    assert corr[0, 4] == -0.5 and corr[0, 1] == 0.5 and np.linalg.eigvalsh(corr).min() > 0
