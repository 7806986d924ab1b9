"""Shared fixtures: a session-wide local Spark, small user-level data, the ASOS file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _fuzz  # noqa: F401  (registers and loads the hypothesis profiles)
import numpy as np
import pandas as pd
import pytest

from proxyscope.simulate import column_roles

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


# -- fitted models shared by the model, analysis, report and CLI tests --------------
#
# Real sampling is slow, so each small fit is made once per code version and
# cached under .cache/test-fits (keyed by a hash of the package source and the
# fit's settings); a file lock lets parallel workers share it.

STREAMING_ROLES: dict[str, Any] = column_roles()


def _source_hash() -> str:
    import hashlib

    # Only the layers a fit depends on: editing reports or the CLI keeps the cache.
    h = hashlib.sha256()
    root = REPO / "src" / "proxyscope"
    for layer in ("core", "data", "model", "simulate"):
        for path in sorted((root / layer).rglob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cached_fit(name: str, build: Any) -> Any:
    """A ProxyFit made by ``build()`` once per source version (disk cache + lock)."""
    import warnings

    from filelock import FileLock

    import proxyscope as ps

    directory = REPO / ".cache" / "test-fits"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{_source_hash()}.nc"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            with warnings.catch_warnings():
                # Small test fits are too short to pass the production ESS bar.
                warnings.simplefilter("ignore")
                fit = build()
            fit.save(path)
    return ps.load(path)


@pytest.fixture(scope="session")
def small_world() -> Any:
    """A small simulated streaming world: 60k users, 20 experiments, default cohort."""
    from proxyscope import simulate

    return simulate.streaming(n_users=60_000, n_experiments=20, seed=11)


@pytest.fixture(scope="session")
def small_effects(small_world: Any) -> Any:
    """Its cells over region x device (12 segment cells), all four proxies."""
    import warnings

    import proxyscope as ps

    roles = {**STREAMING_ROLES, "segments": ["region", "device"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few small cells are dropped (reported)
        return ps.summarize(small_world.users, engine="pandas", **roles)


@pytest.fixture(scope="session")
def small_fit(small_effects: Any) -> Any:
    """Additive pooling, 2 chains x 200 draws (real sampling; not converged to 400 ESS)."""
    import proxyscope as ps

    return cached_fit(
        "small-additive",
        lambda: ps.ProxyModel(pooling="additive", followups=0).fit(
            small_effects, draws=200, tune=200, chains=2, random_seed=5, progress=False
        ),
    )


@pytest.fixture(scope="session")
def small_fit_complete(small_effects: Any) -> Any:
    """Complete pooling on the same cells (for comparisons)."""
    import proxyscope as ps

    return cached_fit(
        "small-complete",
        lambda: ps.ProxyModel(pooling="complete", followups=0).fit(
            small_effects, draws=200, tune=200, chains=2, random_seed=5, progress=False
        ),
    )


@pytest.fixture(scope="session")
def sim_world() -> Any:
    """The default simulated world (250k users, 50 experiments, seed 7)."""
    from proxyscope import simulate

    return simulate.streaming(n_users=250_000, n_experiments=50, seed=7)


@pytest.fixture(scope="session")
def sim_effects(sim_world: Any) -> Any:
    import warnings

    import proxyscope as ps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few small cells are dropped (reported)
        return ps.summarize(sim_world.users, engine="duckdb", **STREAMING_ROLES)


@pytest.fixture(scope="session")
def sim_fit(sim_effects: Any) -> Any:
    """Additive pooling on the default world, 4 chains x 500 draws (real sampling)."""
    import proxyscope as ps

    return cached_fit(
        "sim-additive",
        lambda: ps.ProxyModel(followups=0).fit(
            sim_effects, draws=500, tune=500, chains=4, random_seed=11, progress=False
        ),
    )


def segment_truth(world: Any, fit: Any, variable: str, metric: str) -> np.ndarray:
    """A truth variable for each of the fit's segment cells, in the fit's order."""
    frame = fit.structure.frame()
    cols = list(fit.structure.columns)
    values = []
    for _, row in frame.iterrows():
        sel = {c: row[c] for c in cols}
        values.append(float(world.truth[variable].sel(metric=metric, **sel)))
    return np.array(values)
