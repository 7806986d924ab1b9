"""Shared fixtures: a session-wide local Spark, small user-level data, the ASOS file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

REPO = Path(__file__).resolve().parents[1]
ENGINES = ["pandas", "duckdb", pytest.param("spark", marks=pytest.mark.spark)]


def pytest_configure(config: pytest.Config) -> None:
    # PySpark 4.x warns that it does not yet fully support pandas 3 (third-party noise).
    config.addinivalue_line(
        "filterwarnings", "ignore:PySpark does not yet fully support pandas:FutureWarning"
    )


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the whole run: local[2], 2 shuffle partitions, no UI."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("proxyscope-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def make_users(
    n: int = 3000,
    n_experiments: int = 3,
    seed: int = 11,
    offset: float = 1e9,
) -> pd.DataFrame:
    """Small user-level data with correlated metrics and planted effects.

    ``watch_min`` sits near ``offset`` (1e9 by default) to test that the
    engines keep the digits of a difference of two large means.
    """
    rng = np.random.default_rng(seed)
    exp = rng.integers(0, n_experiments, n) * 10 + 3  # ids 3, 13, 23, ...
    region = rng.choice(np.array(["NA", "EU"]), n)
    device = rng.choice(np.array(["TV", "Mobile"]), n)
    t = rng.integers(0, 2, n)
    lift = 0.5 + 0.2 * (exp // 10)
    sat = rng.normal(size=n)
    eng = rng.normal(size=n) + 0.3 * sat
    p = 1.0 / (1.0 + np.exp(-(0.2 + 0.8 * sat + 0.3 * t * lift)))
    return pd.DataFrame(
        {
            "exp_id": exp,
            "region": region,
            "device": device,
            "treatment": t,
            "retained": rng.binomial(1, p),
            "watch_min": offset + 25 + 10 * eng + 6 * sat + 4 * t * lift + 5 * rng.normal(size=n),
            "starts": rng.poisson(2 + t * lift + np.clip(eng, 0, None)).astype(np.int64),
            "ctr": np.clip(0.3 + 0.05 * eng + 0.06 * t + 0.1 * rng.normal(size=n), 0, 1),
            "rebuffer": np.clip(0.1 - 0.02 * t - 0.01 * sat + 0.03 * rng.random(n), 0, 1),
        }
    )


ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "treatment": "treatment",
    "outcome": "retained",
    "proxies": ["watch_min", "starts", "ctr", "rebuffer"],
    "segments": ["region", "device"],
    "directions": {"rebuffer": "lower"},
}


@pytest.fixture(scope="session")
def users() -> pd.DataFrame:
    """3,000 users, 3 experiments, 2 × 2 segment cells (do not modify)."""
    return make_users()


def asos_path() -> Path:
    """The ASOS CSV: $PROXYSCOPE_ASOS_PATH, else ../shared/data/asos/ beside the repo."""
    env = os.environ.get("PROXYSCOPE_ASOS_PATH")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data" / "asos" / "asos_digital_experiments.csv"
