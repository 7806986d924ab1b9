"""The seed's baseline (difference in means, reliability score, sign counting) by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROLES, make_users

import proxyscope as ps
from proxyscope.analyses.baseline import experiment_effects, reliability_scores, sign_counting
from proxyscope.errors import DataWarning, ParameterError


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, Any]:
    users = make_users(n=6000, n_experiments=6, seed=3, offset=0.0)
    return users, ps.summarize(users, engine="pandas", **ROLES)


def _by_hand(users: pd.DataFrame, metric: str, keys: list[str]) -> pd.Series:
    means = users.groupby([*keys, "treatment"])[metric].mean().unstack("treatment")
    return means[1] - means[0]


def test_sign_counting_follows_the_seed_rule(data: tuple[pd.DataFrame, Any]) -> None:
    users, effects = data
    keys = ["exp_id", "region", "device"]
    cell_long = _by_hand(users, "retained", keys)
    cell_watch = _by_hand(users, "watch_min", keys)
    # The experiment's overall long-term sign (user-weighted over cells, as the
    # baseline computes it; equal to the difference in means up to arm balance).
    users_per_cell = users.groupby(keys).size()
    overall = (cell_long * users_per_cell).groupby("exp_id").sum() / users_per_cell.groupby(
        "exp_id"
    ).sum()
    flips = np.sign(cell_watch) != np.sign(cell_long.index.get_level_values(0).map(overall))
    expected = pd.Series(flips, index=cell_watch.index).groupby(["region", "device"]).mean()
    got = sign_counting(effects).query("proxy == 'watch_min'").set_index(["region", "device"])
    for key, value in expected.items():
        assert got.loc[key, "flip_rate"] == pytest.approx(value)
        assert got.loc[key, "n_cells"] == 6
    # The cell rule compares with the cell's own long-term sign.
    own = pd.Series(np.sign(cell_watch) != np.sign(cell_long)).groupby(["region", "device"]).mean()
    cells = sign_counting(effects, reference="cell").query("proxy == 'watch_min'")
    cells = cells.set_index(["region", "device"])
    for key, value in own.items():
        assert cells.loc[key, "flip_rate"] == pytest.approx(value)


def test_sign_counting_filter_and_bad_arguments(data: tuple[pd.DataFrame, Any]) -> None:
    users, effects = data
    sizes = users.groupby(["exp_id", "region", "device"]).size()
    cut = int(sizes.median())
    kept = sign_counting(effects, min_count=cut)
    assert kept.query("proxy == 'watch_min'")["n_cells"].sum() == int((sizes >= cut).sum())
    # A filter that hides whole segments says which.
    seg_max = sizes.groupby(["region", "device"]).max()
    small = seg_max.idxmin()
    between = int(seg_max.min()) + 1
    assert between <= int(seg_max.max())  # some segments stay, one goes
    with pytest.warns(DataWarning, match=f"left no cell in 1 segment.*{small[0]} / {small[1]}"):
        partial = sign_counting(effects, min_count=between)
    assert f"{small[0]} / {small[1]}" not in set(partial["segment"])
    with pytest.warns(DataWarning, match="min_count=1000000000 left no cell"):
        assert sign_counting(effects, min_count=10**9).empty
    with pytest.raises(ParameterError, match="reference"):
        sign_counting(effects, reference="segment")
    with pytest.raises(ParameterError, match="min_count"):
        sign_counting(effects, min_count=-1)


def test_reliability_score_formula(data: tuple[pd.DataFrame, Any]) -> None:
    _, effects = data
    exp = experiment_effects(effects)
    scores = reliability_scores(effects).set_index("proxy")
    for proxy in effects.proxies:
        x, y = exp[proxy], exp["retained"]
        corr = np.corrcoef(x, y)[0, 1]
        agree = np.mean(np.sign(x) == np.sign(y))
        frag = scores.loc[proxy, "fragility_rate"]
        expected = 0.6 * (corr + 1) / 2 + 0.2 * agree + 0.2 * (1 - frag)
        assert scores.loc[proxy, "reliability"] == pytest.approx(expected)
    assert list(scores["reliability"]) == sorted(scores["reliability"], reverse=True)
