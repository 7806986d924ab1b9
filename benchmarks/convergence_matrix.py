"""The configurations of the convergence matrix (``bench_convergence.py``).

Each configuration is a history a user could plausibly fit: a simulated
streaming world (or the real ASOS experiments) summarized one way, and a
``ProxyModel`` left at its defaults except where the configuration is about
a setting (pooling, noise). The matrix spans:

- 1 to 4 proxies: strong (watch time, starts), weak only (CTR and rebuffer
  rate barely move with retention), strongly collinear (watch time read at
  two horizons, correlation about 0.97 across users);
- no segments, and 1, 2 or 3 segment columns with 2 to 6 levels, balanced,
  unbalanced (a rare region and a rare device) and tiny cells (a few dozen
  users per arm);
- 10 to 1,000 experiments;
- the failure cohort absent, in its default place (IN x Mobile x New) and
  elsewhere (NA x TV x Existing; a whole region);
- per-arm summaries (the real ASOS data);
- noise moderated (the default) and as given;
- every pooling.

``build(name, seed)`` returns the CellEffects and the ProxyModel keyword
arguments of a configuration. The tests import this module (by path) for the
slow checks on the hardest configurations.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

PROXIES_ALL = ("early_watch_min", "early_starts", "early_ctr", "rebuffer_rate")
SEGS_ALL = ("region", "device", "tenure")


@dataclasses.dataclass(frozen=True)
class Config:
    """One row of the matrix."""

    name: str
    what: str
    proxies: tuple[str, ...] = PROXIES_ALL
    segments: tuple[str, ...] = SEGS_ALL
    n_experiments: int = 50
    users_per_experiment: int = 5_000
    cohort: str = "default"  # "default" | "none" | "tv_na_existing" | "region_in"
    mix: str = "default"  # "default" | "unbalanced"
    pooling: str = "additive"
    noise: str = "moderated"
    source: str = "streaming"  # "streaming" | "asos"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)


CONFIGS: tuple[Config, ...] = (
    Config("default", "the demo's world: 4 proxies, region x device x tenure, 50 experiments"),
    Config(
        "readme_cli",
        "the README's CLI example: watch + starts, region x device",
        proxies=("early_watch_min", "early_starts"),
        segments=("region", "device"),
    ),
    Config("p4_region", "4 proxies, one 4-level column (region)", segments=("region",)),
    Config(
        "watch_device_tenure",
        "one proxy (watch time), device x tenure (3 x 2 levels)",
        proxies=("early_watch_min",),
        segments=("device", "tenure"),
    ),
    Config(
        "cohort_tv_na",
        "the failure cohort in NA x TV x Existing instead",
        cohort="tv_na_existing",
    ),
    Config("cohort_region", "the failure cohort is a whole region (IN)", cohort="region_in"),
    Config("no_cohort", "no failure cohort", cohort="none"),
    Config(
        "weak_only",
        "weak proxies only: CTR and rebuffer rate",
        proxies=("early_ctr", "rebuffer_rate"),
    ),
    Config(
        "weak_one",
        "one weak proxy (rebuffer rate), region",
        proxies=("rebuffer_rate",),
        segments=("region",),
    ),
    Config(
        "collinear",
        "strongly collinear proxies: watch time at day 3 and day 7 (user corr ~0.97), + starts",
        proxies=("early_watch_min", "watch_min_d7", "early_starts"),
    ),
    Config(
        "three_proxies_2col",
        "3 proxies (watch, starts, CTR), region x tenure",
        proxies=("early_watch_min", "early_starts", "early_ctr"),
        segments=("region", "tenure"),
    ),
    Config(
        "six_levels",
        "one 6-level column (device x tenure as one column), 4 proxies",
        segments=("device_tenure",),
    ),
    Config("no_segments", "no segments, 4 proxies", segments=()),
    Config(
        "e10",
        "10 experiments, watch + starts, region",
        proxies=("early_watch_min", "early_starts"),
        segments=("region",),
        n_experiments=10,
        users_per_experiment=10_000,
    ),
    Config("e20", "20 experiments, all proxies and segments", n_experiments=20),
    Config(
        "e150_p2",
        "150 experiments, watch + starts, all segments",
        proxies=("early_watch_min", "early_starts"),
        n_experiments=150,
    ),
    Config(
        "e300_2col",
        "300 experiments, 4 proxies, region x device",
        segments=("region", "device"),
        n_experiments=300,
    ),
    Config(
        "e1000",
        "1,000 experiments, 4 proxies, all segments (about 24,000 cells)",
        n_experiments=1000,
    ),
    Config(
        "tiny_cells",
        "tiny cells: 1,500 users per experiment (about 30 per arm and cell)",
        users_per_experiment=1_500,
    ),
    Config(
        "unbalanced",
        "unbalanced cells: IN 3% of users, Desktop 3%",
        mix="unbalanced",
    ),
    Config("as_given", "noise as given (no moderation)", noise="as_given"),
    Config(
        "as_given_tiny",
        "noise as given, tiny cells",
        noise="as_given",
        users_per_experiment=1_500,
    ),
    Config("exchangeable", "exchangeable pooling, all segments", pooling="exchangeable"),
    Config("complete", "complete pooling, all segments", pooling="complete"),
    Config(
        "none_2col",
        "no pooling (independent segments), region x device",
        pooling="none",
        segments=("region", "device"),
    ),
    Config(
        "asos_complete",
        "real ASOS per-arm summaries, 4 metrics as segments, complete pooling",
        source="asos",
        pooling="complete",
    ),
    Config(
        "asos_exchangeable",
        "real ASOS per-arm summaries, 4 metrics as segments, exchangeable pooling",
        source="asos",
        pooling="exchangeable",
    ),
    Config(
        "asos_additive",
        "real ASOS per-arm summaries, 4 metrics as segments, the default pooling",
        source="asos",
    ),
)

BY_NAME = {c.name: c for c in CONFIGS}


def _cohort(kind: str) -> Any:
    from proxyscope.simulate import FailureCohort

    if kind == "default":
        return FailureCohort()
    if kind == "none":
        return FailureCohort.none()
    if kind == "tv_na_existing":
        return FailureCohort(region="NA", device="TV", tenure="Existing")
    if kind == "region_in":
        return FailureCohort(region="IN", device=None, tenure=None)
    raise ValueError(f"unknown cohort {kind!r}")


def _mix(kind: str) -> Any:
    from proxyscope.simulate import SegmentMix

    if kind == "default":
        return SegmentMix()
    if kind == "unbalanced":
        return SegmentMix(
            region={"NA": 0.5, "LATAM": 0.22, "EU": 0.25, "IN": 0.03},
            device={"TV": 0.5, "Mobile": 0.47, "Desktop": 0.03},
        )
    raise ValueError(f"unknown mix {kind!r}")


def asos_path() -> Path | None:
    """The ASOS file: ``$PROXYSCOPE_ASOS_PATH`` or beside the repository."""
    env = os.environ.get("PROXYSCOPE_ASOS_PATH")
    here = Path(__file__).resolve().parent.parent
    for p in (env, here.parent / "shared/data/asos/asos_digital_experiments.csv"):
        if p and Path(p).exists():
            return Path(p)
    return None


def build(name: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """CellEffects and ProxyModel keyword arguments of configuration ``name``.

    The world's seed is ``seed`` (ASOS: the data are fixed; only the fit's
    seed changes).
    """
    import proxyscope as ps

    cfg = BY_NAME[name]
    model = {"pooling": cfg.pooling, "noise": cfg.noise, **cfg.model}
    if cfg.source == "asos":
        path = asos_path()
        if path is None:
            raise FileNotFoundError("the ASOS file (set PROXYSCOPE_ASOS_PATH)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            effects = ps.load_asos(path)
        return effects, model
    world = ps.simulate.streaming(
        n_users=cfg.users_per_experiment * cfg.n_experiments,
        n_experiments=cfg.n_experiments,
        seed=seed,
        cohort=_cohort(cfg.cohort),
        mix=_mix(cfg.mix),
    )
    users = world.users
    if "watch_min_d7" in cfg.proxies or "device_tenure" in cfg.segments:
        users = users.copy()
        rng = np.random.default_rng([seed, 7])
        if "watch_min_d7" in cfg.proxies:
            # Watch time over the first week: day-3 minutes, scaled, plus the
            # minutes of days 4-7 that follow them noisily.
            base = users["early_watch_min"].to_numpy()
            users["watch_min_d7"] = 2.1 * base + rng.normal(0.0, 2.5, size=len(users))
        if "device_tenure" in cfg.segments:
            users["device_tenure"] = users["device"].astype(str) + "-" + users["tenure"].astype(str)
    directions = {"rebuffer_rate": "lower"} if "rebuffer_rate" in cfg.proxies else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effects = ps.summarize(
            users,
            experiment="exp_id",
            treatment="treatment",
            outcome="long_retained",
            proxies=list(cfg.proxies),
            segments=list(cfg.segments),
            directions=directions,
            engine="duckdb",
        )
    return effects, model
