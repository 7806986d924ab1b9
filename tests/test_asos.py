"""The ASOS adapter on the real file (Liu et al. 2021, DOI 10.17605/OSF.IO/64JSB, CC BY 4.0).

The file lives outside the repository: $PROXYSCOPE_ASOS_PATH, else
../shared/data/asos/asos_digital_experiments.csv beside the repo root. These
tests fail, not skip, when it is absent.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import asos_path

from proxyscope import dims
from proxyscope.data.cells import CellEffects
from proxyscope.datasets.asos import load_asos, read_asos
from proxyscope.errors import DataWarning, ParameterError


@pytest.fixture(scope="module")
def path() -> Path:
    p = asos_path()
    assert p.is_file(), (
        f"ASOS data not found at {p}; set PROXYSCOPE_ASOS_PATH or place the file at "
        "../shared/data/asos/asos_digital_experiments.csv beside the repository."
    )
    return p


@pytest.fixture(scope="module")
def csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"experiment_id": str})


def _load(path: Path, **kwargs: Any) -> tuple[CellEffects, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_asos(path, **kwargs)
    assert all(issubclass(w.category, DataWarning) for w in caught)
    return got, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def pooled(path: Path) -> tuple[CellEffects, list[str]]:
    return _load(path)


def test_shapes_of_the_pooled_framing(pooled: tuple[CellEffects, list[str]]) -> None:
    got, _ = pooled
    assert got.segments == ("metric_id",)
    assert got.metrics == ("final", "early")
    # 99 treatment arms × 4 metrics = 396 cells, 39 of them dropped (reported).
    assert got.n_cells == 357
    assert len(got.dropped) == 39
    assert got.n_cells + len(got.dropped) == 396
    assert len(got.experiments) == 93
    assert set(got.cells()["metric_id"]) == {"1", "2", "3", "4"}
    assert got.effect.shape == (357, 2)
    assert got.noise_cov.shape == (357, 2, 2)
    assert np.all(np.isfinite(got.effect)) and np.all(np.isfinite(got.noise_cov))
    # Every cell of an experiment is a metric of the same users: the report counts them once.
    assert got.meta["segments_share_users"] is True
    reasons = set(got.dropped["reason"])
    assert reasons == {
        "no snapshot with variances",
        "no snapshot on or after day 3",
        "early read is the final read",
    }
    assert "Liu" in got.meta["citation"] and "10.17605/OSF.IO/64JSB" in got.meta["citation"]


def test_rows_without_variance_are_reported(
    pooled: tuple[CellEffects, list[str]], csv: pd.DataFrame
) -> None:
    got, messages = pooled
    lacking = int((csv["variance_c"].isna() | csv["variance_t"].isna()).sum())
    assert 778 <= lacking <= 779
    assert got.meta["asos"]["rows_without_variance"] == lacking
    assert any(f"removed {lacking} snapshot rows without variances" in m for m in messages)
    assert any("dropped 39 of 396 cells" in m for m in messages)
    no_var = got.dropped[got.dropped["reason"] == "no snapshot with variances"]
    assert set(no_var["metric_id"]) == {"2", "3", "4"}


def test_assumed_correlation_is_recorded(pooled: tuple[CellEffects, list[str]], path: Path) -> None:
    got, _ = pooled
    assert got.assumed_correlation == {"final|early": 0.5}
    assert "ASSUMED noise correlations (not estimated): final|early: 0.5" in repr(got)
    other, _ = _load(path, metric=1, correlation=0.8)
    assert other.assumed_correlation == {"final|early": 0.8}


def _hand(
    csv: pd.DataFrame, exp: str, variant: int, metric: int, rho: float, out_metric: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Effect and noise covariance of one arm straight from its CSV rows."""

    def rows(m: int) -> pd.DataFrame:
        r = csv[
            (csv["experiment_id"] == exp) & (csv["variant_id"] == variant) & (csv["metric_id"] == m)
        ]
        return r.sort_values("time_since_start")

    early = rows(metric)
    early = early[early["time_since_start"] >= 3.0 - 1e-9].iloc[0]
    final = rows(out_metric or metric).iloc[-1]
    ce, cf = early["mean_c"], final["mean_c"]
    effect = np.array(
        [(final["mean_t"] - final["mean_c"]) / cf, (early["mean_t"] - early["mean_c"]) / ce]
    )
    cov = np.zeros((2, 2))
    for s in ("t", "c"):
        nf, ne = final[f"count_{s}"], early[f"count_{s}"]
        vf, ve = final[f"variance_{s}"] / cf**2, early[f"variance_{s}"] / ce**2
        cov[0, 0] += vf / nf
        cov[1, 1] += ve / ne
        cov[0, 1] += rho * math.sqrt(vf * ve) / max(nf, ne)
    cov[1, 0] = cov[0, 1]
    return effect, cov


def test_effect_equals_hand_computation(
    pooled: tuple[CellEffects, list[str]], csv: pd.DataFrame
) -> None:
    got, _ = pooled
    cells = got.cells()
    c = int(np.flatnonzero((cells["experiment"] == "036afc:2") & (cells["metric_id"] == "1"))[0])
    effect, cov = _hand(csv, "036afc", 2, 1, 0.5, None)
    np.testing.assert_allclose(got.effect[c], effect, rtol=1e-12)
    np.testing.assert_allclose(got.noise_cov[c], cov, rtol=1e-12)
    # The early read of this arm is the day-3 snapshot (stored as 3.0000000000000004).
    assert got.data[dims.N_TREAT].values[c] == 1050508


def test_single_metric_with_another_outcome_metric(path: Path, csv: pd.DataFrame) -> None:
    got, _ = _load(path, metric=2, outcome_metric=1, correlation=0.3)
    assert got.segments == ()
    cells = got.cells()
    c = int(np.flatnonzero(cells["experiment"] == "036afc:2")[0])
    effect, cov = _hand(csv, "036afc", 2, 2, 0.3, 1)
    np.testing.assert_allclose(got.effect[c], effect, rtol=1e-12)
    np.testing.assert_allclose(got.noise_cov[c], cov, rtol=1e-12)
    assert got.meta["asos"]["outcome_metric"] == 1
    assert got.meta["segments_share_users"] is False


def test_absolute_scale(path: Path, csv: pd.DataFrame) -> None:
    got, _ = _load(path, metric=1, scale="absolute")
    c = int(np.flatnonzero(got.cells()["experiment"] == "036afc:2")[0])
    final = csv[
        (csv["experiment_id"] == "036afc") & (csv["variant_id"] == 2) & (csv["metric_id"] == 1)
    ].iloc[-1]
    assert got.effect[c, 0] == pytest.approx(final["mean_t"] - final["mean_c"], rel=1e-12)


def test_every_variant_is_a_treatment_arm(csv: pd.DataFrame, path: Path) -> None:
    # Each row compares one treatment variant with the experiment's control
    # (the *_c columns), variant 1 included: 99 arms.
    assert csv.groupby(["experiment_id", "variant_id"]).ngroups == 99
    raw = read_asos(path)
    assert len(raw) == len(csv)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"metric": 7}, r"The 'metric' parameter of load_asos must be one of the metric ids"),
        ({"scale": "rel"}, r"The 'scale' parameter of load_asos must be one of"),
        ({"early_day": -1}, r"The 'early_day' parameter of load_asos must be a number"),
        ({"correlation": 2.0}, r"must be a correlation in \[-1, 1\]"),
        ({"variants": [9]}, r"The 'variants' parameter of load_asos keeps no row"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], pattern: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(ParameterError, match=pattern):
            load_asos(path, **kwargs)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"no file at"):
        load_asos(tmp_path / "nope.csv")


def test_save_and_load_keep_the_assumption(
    pooled: tuple[CellEffects, list[str]], tmp_path: Path
) -> None:
    got, _ = pooled
    back = CellEffects.load(got.save(tmp_path / "asos.nc"))
    assert back.assumed_correlation == {"final|early": 0.5}
    assert back.fingerprint() == got.fingerprint()
    assert len(back.dropped) == 39
