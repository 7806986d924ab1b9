"""Settings of the simulator fail closed: every bad value raises, naming field and value."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from typing import Any

import numpy as np
import pytest

from proxyscope import simulate
from proxyscope.errors import ParameterError
from proxyscope.simulate import FailureCohort, SegmentMix, StreamingConfig


def raises(match: str) -> Any:
    return pytest.raises(ParameterError, match=re.escape(match))


# -- SegmentMix -------------------------------------------------------------------


def test_default_mix_is_the_seeds() -> None:
    mix = SegmentMix()
    assert dict(mix.region) == {"NA": 0.35, "LATAM": 0.20, "EU": 0.25, "IN": 0.20}
    assert dict(mix.device) == {"TV": 0.45, "Mobile": 0.45, "Desktop": 0.10}
    assert dict(mix.tenure) == {"New": 0.30, "Existing": 0.70}
    assert not mix.is_joint
    joint = mix.joint()
    assert joint.dims == ("region", "device", "tenure")
    assert joint.sel(region="IN", device="Mobile", tenure="New").item() == pytest.approx(
        0.20 * 0.45 * 0.30, abs=1e-15
    )
    assert float(joint.sum()) == pytest.approx(1.0, abs=1e-12)


def test_mix_sum_not_one_names_field_value_and_table() -> None:
    with raises("SegmentMix.region: probabilities must sum to 1; got 0.9 for {'NA': 0.5"):
        SegmentMix(region={"NA": 0.5, "LATAM": 0.4})
    with raises("SegmentMix.tenure: probabilities must sum to 1; got 1.1"):
        SegmentMix(tenure={"New": 0.5, "Existing": 0.6})


def test_mix_sum_tolerance_is_1e_9() -> None:
    SegmentMix(tenure={"New": 0.3 + 5e-10, "Existing": 0.7})  # within 1e-9
    with raises("SegmentMix.tenure: probabilities must sum to 1"):
        SegmentMix(tenure={"New": 0.3 + 5e-9, "Existing": 0.7})


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (
            {"TV": -0.1, "Mobile": 1.1},
            "SegmentMix.device: probability for 'TV' must be in [0, 1]; got -0.1",
        ),
        (
            {"TV": 1.5, "Mobile": -0.5},
            "SegmentMix.device: probability for 'TV' must be in [0, 1]; got 1.5",
        ),
        (
            {"TV": math.nan, "Mobile": 1.0},
            "SegmentMix.device: probability for 'TV' must be a finite number; got nan",
        ),
        (
            {"TV": "0.5", "Mobile": 0.5},
            "SegmentMix.device: probability for 'TV' must be a finite number; got '0.5'",
        ),
        (
            {"Phone": 1.0},
            "SegmentMix.device: unknown device level 'Phone'; "
            "expected one of ['TV', 'Mobile', 'Desktop']",
        ),
        ({"mobile": 1.0}, "Did you mean 'Mobile'?"),
    ],
)
def test_mix_bad_probabilities(probs: dict[str, object], message: str) -> None:
    with raises(message):
        SegmentMix(device=probs)  # type: ignore[arg-type]


def test_mix_not_a_mapping() -> None:
    with raises(
        "SegmentMix.region: expected a mapping from region level to probability; got [0.5, 0.5]"
    ):
        SegmentMix(region=[0.5, 0.5])  # type: ignore[arg-type]


def test_mix_missing_levels_are_zero() -> None:
    mix = SegmentMix(region={"IN": 1.0})
    assert dict(mix.region) == {"NA": 0.0, "LATAM": 0.0, "EU": 0.0, "IN": 1.0}
    assert mix.joint().sel(region="NA").sum().item() == 0.0


def test_joint_mix_table_and_marginals() -> None:
    mix = SegmentMix.from_joint({("IN", "Mobile", "New"): 0.7, ("NA", "TV", "Existing"): 0.3})
    assert mix.is_joint
    table = mix.joint()
    assert table.sel(region="IN", device="Mobile", tenure="New").item() == 0.7
    assert table.sel(region="NA", device="TV", tenure="Existing").item() == 0.3
    assert int((table > 0).sum()) == 2
    assert dict(mix.region) == {"NA": 0.3, "LATAM": 0.0, "EU": 0.0, "IN": 0.7}
    assert dict(mix.tenure) == {"New": 0.7, "Existing": 0.3}


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({("IN", "Mobile", "New"): 0.7}, "SegmentMix.cells: probabilities must sum to 1; got 0.7"),
        ({("IN", "Mobile", "New"): 1.2, ("NA", "TV", "New"): -0.2}, "must be in [0, 1]; got 1.2"),
        ({("India", "Mobile", "New"): 1.0}, "SegmentMix.cells: unknown region level 'India'"),
        ({("IN", "Mobile", "Old"): 1.0}, "SegmentMix.cells: unknown tenure level 'Old'"),
        (
            {("IN", "Mobile"): 1.0},
            "SegmentMix.cells: keys must be (region, device, tenure) tuples; got ('IN', 'Mobile')",
        ),
    ],
)
def test_joint_mix_bad_cells(cells: dict[tuple[str, ...], float], message: str) -> None:
    with raises(message):
        SegmentMix.from_joint(cells)  # type: ignore[arg-type]


def test_concentrated_mix_moves_a_share_into_one_cell() -> None:
    base = SegmentMix.from_joint({("IN", "Mobile", "New"): 0.25, ("NA", "TV", "Existing"): 0.75})
    mix = base.concentrated(("EU", "Desktop", "New"), 0.6)
    table = mix.joint()
    assert table.sel(region="EU", device="Desktop", tenure="New").item() == pytest.approx(0.6)
    assert table.sel(region="IN", device="Mobile", tenure="New").item() == pytest.approx(0.1)
    assert table.sel(region="NA", device="TV", tenure="Existing").item() == pytest.approx(0.3)
    assert float(table.sum()) == pytest.approx(1.0)
    # A cell that already has users keeps its own share on top.
    same = base.concentrated(("IN", "Mobile", "New"), 0.5)
    assert same.joint().sel(region="IN", device="Mobile", tenure="New").item() == pytest.approx(
        0.5 + 0.5 * 0.25
    )
    with raises("'cell' parameter of SegmentMix.concentrated"):
        base.concentrated(("IN", "Mobile"), 0.5)  # type: ignore[arg-type]
    with raises("'share' parameter of SegmentMix.concentrated must be a number in [0, 1]; got 1.5"):
        base.concentrated(("IN", "Mobile", "New"), 1.5)


def test_joint_and_marginal_must_agree() -> None:
    with raises("SegmentMix.region: marginal"):
        SegmentMix(region={"NA": 1.0}, cells={("IN", "Mobile", "New"): 1.0})
    ok = SegmentMix(region={"IN": 1.0}, cells={("IN", "Mobile", "New"): 1.0})
    assert ok.is_joint


def test_mix_is_frozen_hashable_and_picklable() -> None:
    mix = SegmentMix()
    with pytest.raises(dataclasses.FrozenInstanceError):
        mix.region = {"IN": 1.0}  # type: ignore[misc]
    with pytest.raises(TypeError):
        mix.region["IN"] = 1.0  # type: ignore[index]
    assert hash(mix) == hash(SegmentMix())
    assert mix == SegmentMix(region={"NA": 0.35, "LATAM": 0.20, "EU": 0.25, "IN": 0.20})
    assert mix != SegmentMix(region={"IN": 1.0})
    assert pickle.loads(pickle.dumps(mix)) == mix
    joint = SegmentMix.from_joint({("IN", "Mobile", "New"): 1.0})
    assert pickle.loads(pickle.dumps(joint)) == joint


# -- FailureCohort --------------------------------------------------------------------


def test_default_cohort_is_the_seeds() -> None:
    cohort = FailureCohort()
    assert (cohort.region, cohort.device, cohort.tenure) == ("IN", "Mobile", "New")
    assert (cohort.long_penalty, cohort.watch_boost, cohort.starts_boost) == (-0.25, 6.0, 0.6)
    member = cohort.cells().reshape(4, 3, 2)
    assert member.sum() == 1.0 and member[3, 1, 0] == 1.0
    assert FailureCohort(device="Mobile", region=None, tenure=None).cells().sum() == 8.0
    assert FailureCohort(region=None, device=None, tenure=None).cells().sum() == 24.0
    assert FailureCohort.none().cells().sum() == 0.0
    assert not FailureCohort.none().active


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"region": "India"},
            "FailureCohort.region: unknown region level 'India'; "
            "expected one of ['NA', 'LATAM', 'EU', 'IN']",
        ),
        ({"device": "mobile"}, "FailureCohort.device: unknown device level 'mobile'"),
        ({"tenure": 1}, "FailureCohort.tenure: unknown tenure level 1"),
        (
            {"long_penalty": math.inf},
            "FailureCohort.long_penalty: must be a finite number; got inf",
        ),
        ({"watch_boost": math.nan}, "FailureCohort.watch_boost: must be a finite number; got nan"),
        ({"starts_boost": "0.6"}, "FailureCohort.starts_boost: must be a finite number; got '0.6'"),
        ({"starts_boost": True}, "FailureCohort.starts_boost: must be a finite number; got True"),
    ],
)
def test_cohort_validation(kwargs: dict[str, object], message: str) -> None:
    with raises(message):
        FailureCohort(**kwargs)  # type: ignore[arg-type]


# -- StreamingConfig ------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = StreamingConfig()
    assert (cfg.n_users, cfg.n_experiments, cfg.seed) == (250_000, 50, 7)
    assert (cfg.exp_tau_sd, cfg.exp_bias_sd) == (0.12, 0.08)
    assert cfg.mix == SegmentMix() and cfg.cohort == FailureCohort()
    assert StreamingConfig(n_users=np.int64(10), n_experiments=np.int32(1)).n_users == 10
    assert type(StreamingConfig(n_users=np.int64(10)).n_users) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "StreamingConfig.n_users: must be >= 1; got 0"),
        ({"n_users": -5}, "StreamingConfig.n_users: must be >= 1; got -5"),
        ({"n_users": 2.5}, "StreamingConfig.n_users: must be an integer >= 1; got 2.5"),
        ({"n_users": True}, "StreamingConfig.n_users: must be an integer >= 1; got True"),
        ({"n_users": "100"}, "StreamingConfig.n_users: must be an integer >= 1; got '100'"),
        ({"n_experiments": 0}, "StreamingConfig.n_experiments: must be >= 1; got 0"),
        ({"seed": -1}, "StreamingConfig.seed: must be >= 0; got -1"),
        ({"seed": 1.0}, "StreamingConfig.seed: must be an integer >= 0; got 1.0"),
        ({"exp_tau_sd": 0.0}, "StreamingConfig.exp_tau_sd: must be a finite number > 0; got 0.0"),
        ({"exp_tau_sd": -0.1}, "StreamingConfig.exp_tau_sd: must be a finite number > 0; got -0.1"),
        (
            {"exp_tau_sd": math.nan},
            "StreamingConfig.exp_tau_sd: must be a finite number > 0; got nan",
        ),
        (
            {"exp_bias_sd": -0.01},
            "StreamingConfig.exp_bias_sd: must be a finite number >= 0; got -0.01",
        ),
        (
            {"exp_bias_sd": math.inf},
            "StreamingConfig.exp_bias_sd: must be a finite number >= 0; got inf",
        ),
        ({"mix": {"IN": 1.0}}, "StreamingConfig.mix: must be a SegmentMix; got dict {'IN': 1.0}"),
        ({"cohort": "IN"}, "StreamingConfig.cohort: must be a FailureCohort; got str 'IN'"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with raises(message):
        StreamingConfig(**kwargs)  # type: ignore[arg-type]


def test_errors_are_value_errors_and_streaming_validates_options() -> None:
    with pytest.raises(ValueError, match="n_users"):
        simulate.streaming(n_users=-1)
    with raises("StreamingConfig.exp_bias_sd: must be a finite number >= 0; got -1"):
        simulate.streaming(exp_bias_sd=-1)
    with raises("config must be a StreamingConfig; got int 250000"):
        simulate.streaming(250_000)  # type: ignore[arg-type]
    with raises("SegmentMix.cells: probabilities must sum to 1; got 0.5"):
        simulate.streaming(n_users=100, mix={("IN", "TV", "New"): 0.5})


def test_streaming_options_override_config() -> None:
    cfg = StreamingConfig(n_users=1_000, n_experiments=3, seed=4, exp_tau_sd=0.3)
    world = simulate.streaming(cfg, n_experiments=5)
    assert world.config == dataclasses.replace(cfg, n_experiments=5)
    assert simulate.streaming(cfg).config is cfg
