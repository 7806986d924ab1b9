"""Cells of many designs: the ``design`` coordinate, optional per-cell variables,
stated units, ``CellEffects.concat``, and files written before designs existed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import proxyscope as ps
from proxyscope import dims
from proxyscope.core import checksum
from proxyscope.data import designs
from proxyscope.data.cellbuild import build
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.cells import CellEffects
from proxyscope.errors import DataError, IncompatibleFileError, ParameterError

METRICS = ["y", "a", "b"]


def cells(
    experiments: list[Any],
    *,
    segments: tuple[str, ...] = ("region",),
    design: Any = designs.AB,
    seed: int = 0,
    **kw: Any,
) -> CellEffects:
    """Two cells per experiment (regions EU and NA; one without segment columns) with
    random effects and positive definite covariances."""
    rng = np.random.default_rng(seed)
    per = 2 if segments else 1
    keys = {dims.EXPERIMENT: np.repeat(experiments, per)}
    for s in segments:
        keys[s] = np.tile(["EU", "NA"], len(experiments))
    n = per * len(experiments)
    a = rng.normal(size=(n, 3, 3))
    return build(
        pd.DataFrame(keys),
        rng.integers(50, 100, n),
        rng.integers(50, 100, n),
        rng.normal(size=(n, 3)),
        a @ np.swapaxes(a, 1, 2) + np.eye(3),
        outcome="y",
        proxies=["a", "b"],
        segments=list(segments),
        directions=kw.pop("directions", {"a": "higher", "b": "lower"}),
        engine="test",
        design=design,
        **kw,
    )


def old_fingerprint(c: CellEffects) -> str:
    """CellEffects.fingerprint as it was before designs were recorded (commit 816f3bb~1)."""
    h = hashlib.sha256()
    for arr in (c.effect, c.noise_cov):
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    for arr in (c.data[dims.N_TREAT].values, c.data[dims.N_CONTROL].values):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    keys = c.cells().astype(str)
    h.update(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
    h.update(json.dumps([c.metrics, c.segments, c.directions]).encode())
    return h.hexdigest()


def test_design_coordinate_and_designs() -> None:
    one = cells([1, 2])
    assert list(one.design) == ["ab"] * 4 and one.designs == ["ab"]
    assert "designs:" not in repr(one)
    per_cell = ["synthetic_control", "ab", "did", "ab"]
    mixed = cells([1, 2], design=per_cell)
    assert list(mixed.design) == per_cell
    # In the order of DESIGNS, whatever the cells' order.
    assert mixed.designs == ["ab", "did", "synthetic_control"]
    assert "designs: ab (2 cells), did (1 cells), synthetic_control (1 cells)" in repr(mixed)
    assert list(mixed.to_frame()[dims.DESIGN]) == per_cell
    assert [designs.is_randomized(d) for d in designs.DESIGNS] == [
        True, True, False, False, False, False, False,
    ]  # fmt: skip
    with pytest.raises(ParameterError, match=r"got the design 'AB'; a design is one of"):
        cells([1, 2], design="AB")
    with pytest.raises(ParameterError, match=r"one design or one per cell \(4\); got 3"):
        cells([1, 2], design=["ab"] * 3)


def test_optional_variables_are_filled_where_absent() -> None:
    plain = cells([1, 2])
    assert plain.variable(designs.N_CLUSTERS_TREAT).tolist() == [0, 0, 0, 0]
    assert plain.variable(designs.N_CLUSTERS_TREAT).dtype.kind == "i"
    assert np.isnan(plain.variable(designs.SPILLOVER)).all()
    assert plain.variable(designs.SPILLOVER).shape == (4, 3)
    assert plain.variable(designs.SPILLOVER_COV).shape == (4, 3, 3)
    with pytest.raises(ParameterError, match=r"must be one of \['n_clusters_treat'"):
        plain.variable("n_clusters")
    spill = np.arange(12.0).reshape(4, 3)
    given = cells(
        [1, 2],
        design="cluster",
        variables={designs.N_CLUSTERS_TREAT: np.array([40, 41, 42, 43]), designs.SPILLOVER: spill},
    )
    assert given.variable(designs.N_CLUSTERS_TREAT).tolist() == [40, 41, 42, 43]
    np.testing.assert_array_equal(given.variable(designs.SPILLOVER), spill)


def test_save_and_load_keep_designs_variables_and_units(tmp_path: Path) -> None:
    units = {"y": "percent", "a": "minutes", "b": "count"}
    c = cells(
        ["e1", "e2"],
        design=["cluster", "cluster", "did", "ipw"],
        variables={
            designs.N_CLUSTERS_CONTROL: np.array([31, 32, 0, 0]),
            designs.SPILLOVER_COV: np.full((4, 3, 3), 0.5),
        },
        units=units,
    )
    back = CellEffects.load(c.save(tmp_path / "c.nc"))
    assert list(back.design) == ["cluster", "cluster", "did", "ipw"]
    assert back.units == units
    assert back.variable(designs.N_CLUSTERS_CONTROL).tolist() == [31, 32, 0, 0]
    np.testing.assert_array_equal(back.variable(designs.SPILLOVER_COV), np.full((4, 3, 3), 0.5))
    assert np.isnan(back.variable(designs.SPILLOVER)).all()  # absent: still filled
    assert back.fingerprint() == c.fingerprint()


def test_a_file_written_before_designs_reads_as_ab(tmp_path: Path) -> None:
    from proxyscope.data import cellfile

    c = cells([1, 2])
    old = c.data.drop_vars(dims.DESIGN)
    assert dims.DESIGN not in old.coords
    path = cellfile.write(old, tmp_path / "old.nc")
    back = CellEffects.load(path)
    assert list(back.design) == ["ab"] * 4
    assert back.fingerprint() == c.fingerprint() == old_fingerprint(c)
    assert CellEffects(old).designs == ["ab"]


def test_fingerprints() -> None:
    ab = cells([1, 2])
    # All-ab cells without units hash exactly as before designs were recorded.
    assert ab.fingerprint() == old_fingerprint(ab)
    # Anything else that is new enters the hash.
    did = cells([1, 2], design="did")
    assert did.fingerprint() not in (ab.fingerprint(), old_fingerprint(did))
    with_units = cells([1, 2], units=dict.fromkeys(METRICS, "x"))
    assert with_units.fingerprint() != ab.fingerprint()
    counts = cells([1, 2], variables={designs.N_SPILLOVER: np.array([1, 2, 3, 4])})
    assert counts.fingerprint() != ab.fingerprint()
    assert cells([1, 2], design="did").fingerprint() == did.fingerprint()


def test_concat_keeps_each_cells_design_and_fills_variables() -> None:
    a = cells([1, 2], seed=1)
    b = cells([3], design="did", seed=2, variables={designs.N_SPILLOVER: np.array([5, 6])})
    c = cells([4, 5], design=["rdd", "rdd", "ipw", "ipw"], seed=3)
    joined = CellEffects.concat([a, b, c])
    assert joined.n_cells == 10
    assert list(joined.design) == ["ab"] * 4 + ["did"] * 2 + ["rdd", "rdd", "ipw", "ipw"]
    assert joined.designs == ["ab", "did", "rdd", "ipw"]
    np.testing.assert_array_equal(joined.effect, np.concatenate([a.effect, b.effect, c.effect]))
    np.testing.assert_array_equal(
        joined.noise_cov, np.concatenate([a.noise_cov, b.noise_cov, c.noise_cov])
    )
    assert joined.experiment.dtype == np.int64
    assert list(joined.experiment) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert joined.variable(designs.N_SPILLOVER).tolist() == [0, 0, 0, 0, 5, 6, 0, 0, 0, 0]
    assert joined.meta["engine"] == "test"
    assert [p["n_cells"] for p in joined.meta["parts"]] == [4, 2, 4]
    assert [p["designs"] for p in joined.meta["parts"]] == [["ab"], ["did"], ["rdd", "ipw"]]
    # A concatenation of concatenations keeps the parts flat, and the same cells.
    again = CellEffects.concat([CellEffects.concat([a, b]), c])
    assert again.fingerprint() == joined.fingerprint()
    assert len(again.meta["parts"]) == 3


def test_concat_mixes_id_types_as_text_and_keeps_dropped_and_assumptions() -> None:
    a = build(
        pd.DataFrame({dims.EXPERIMENT: [1, 2]}),
        [10, 10], [10, 10], np.zeros((2, 2)), np.tile(np.eye(2), (2, 1, 1)),
        outcome="y", proxies=["a"], segments=[], directions={}, engine="e1",
        dropped=[{"experiment": 9, "reason": "below min_users_per_arm=10"}],
        assumed_correlation={"y|a": 0.3},
    )  # fmt: skip
    b = build(
        pd.DataFrame({dims.EXPERIMENT: ["x"]}),
        [0], [0], np.zeros((1, 2)), np.eye(2)[None],
        outcome="y", proxies=["a"], segments=[], directions={}, engine="e2", design="external",
    )  # fmt: skip
    joined = CellEffects.concat([a, b])
    assert joined.experiment.tolist() == ["1", "2", "x"]
    assert joined.meta["engine"] == "e1+e2"
    assert len(joined.dropped) == 1
    assert joined.assumed_correlation == {"y|a": 0.3}


@pytest.mark.parametrize(
    ("other", "pattern"),
    [
        (lambda: cells([3], directions={"a": "lower", "b": "lower"}), r"part 1 has directions"),
        (lambda: cells([3], segments=("device",)), r"part 1 has segment columns \['device'\]"),
        (lambda: cells([3], segments=()), r"part 1 has segment columns \[\]"),
        (lambda: cells([3], units=dict.fromkeys(METRICS, "x")), r"part 1 has units"),
        (lambda: cells([3]).select_proxies(["b", "a"]), r"part 1 has proxies \['b', 'a'\]"),
        (lambda: cells([3]).select_proxies(["a"]), r"part 1 has proxies \['a'\]"),
    ],
)
def test_concat_names_the_mismatch(other: Any, pattern: str) -> None:
    with pytest.raises(DataError, match=r"CellEffects\.concat: " + pattern):
        CellEffects.concat([cells([1, 2]), other()])


def test_concat_names_a_cell_in_two_parts() -> None:
    with pytest.raises(
        DataError, match=r"CellEffects\.concat: experiment 2, segment .*'EU'.* \[0, 1\]"
    ):
        CellEffects.concat([cells([1, 2]), cells([2], design="did")])
    with pytest.raises(
        DataError, match=r"experiment 'x', segment .*'all'.* appears in parts \[0, 2\]"
    ):
        CellEffects.concat(
            [cells(["x"], segments=()), cells(["y"], segments=()), cells(["x"], segments=())]
        )


def test_concat_shows_the_segment_label_as_text() -> None:
    with pytest.raises(DataError, match=r"experiment 2, segment 'EU' appears in parts \[0, 1\]"):
        CellEffects.concat([cells([1, 2]), cells([2], design="did")])


def test_concat_names_a_different_outcome() -> None:
    renamed = build(
        pd.DataFrame({dims.EXPERIMENT: [3, 3], "region": ["EU", "NA"]}),
        [10, 10], [10, 10], np.zeros((2, 3)), np.tile(np.eye(3), (2, 1, 1)),
        outcome="z", proxies=["a", "b"], segments=["region"],
        directions={"a": "higher", "b": "lower"}, engine="test",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"part 1 has outcome 'z' but part 0 has 'y'"):
        CellEffects.concat([cells([1]), renamed])


@pytest.mark.parametrize("parts", [[], (), None])
def test_concat_needs_a_list_of_cell_effects(parts: Any) -> None:
    with pytest.raises(ParameterError, match=r"must be a non-empty list of CellEffects"):
        CellEffects.concat(parts)


def test_concat_refuses_what_is_not_cell_effects() -> None:
    with pytest.raises(ParameterError, match=r"must hold CellEffects; part 1 is DataFrame"):
        CellEffects.concat([cells([1]), pd.DataFrame()])
    with pytest.raises(ParameterError, match=r"must be a non-empty list of CellEffects; got Cell"):
        CellEffects.concat(cells([1]))  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"must hold CellEffects; part 0 is str"):
        CellEffects.concat("cells")  # type: ignore[arg-type]


def test_a_design_coordinate_with_an_unknown_design_is_refused(tmp_path: Path) -> None:
    c = cells([1, 2])
    data = c.data.assign_coords({dims.DESIGN: (dims.CELL, np.array(["ab", "ab", "AB", "ab"]))})
    with pytest.raises(DataError, match=r"coordinate 'design' holds 'AB'"):
        CellEffects(data)
    data.attrs = dict(data.attrs)
    data.attrs[checksum.CHECKSUM_ATTR] = checksum.digest({"/": data}, {})
    data.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    with pytest.raises(IncompatibleFileError, match=r"does not hold valid cell effects"):
        CellEffects.load(tmp_path / "bad.nc")
    assert META_ATTR in data.attrs


def test_subsets_keep_designs_and_variables() -> None:
    spill = np.arange(12.0).reshape(4, 3)
    c = cells(
        ["e1", "e2"],
        design=["cluster", "cluster", "did", "did"],
        variables={designs.SPILLOVER: spill, designs.N_CLUSTERS_TREAT: np.array([1, 2, 3, 4])},
    )
    sub = c.subset(["e2"])
    assert list(sub.design) == ["did", "did"]
    assert sub.variable(designs.N_CLUSTERS_TREAT).tolist() == [3, 4]
    only_b = c.select_proxies(["b"])
    np.testing.assert_array_equal(only_b.variable(designs.SPILLOVER), spill[:, [0, 2]])
    assert list(only_b.design) == list(c.design)


def test_concat_keeps_every_parts_assumed_correlation() -> None:
    """Two parts that assume different correlations for one pair keep both, by part."""
    a = CellEffects.concat([cells([1])])
    meta_a = json.loads(a.data.attrs[META_ATTR])
    meta_a["assumed_correlation"] = {"y|a": 0.3}
    b = cells([2])
    meta_b = json.loads(b.data.attrs[META_ATTR])
    meta_b["assumed_correlation"] = {"y|a": 0.5}
    parts = []
    for effects, meta in ((a, meta_a), (b, meta_b)):
        data = effects.data.copy()
        data.attrs = {META_ATTR: json.dumps(meta)}
        parts.append(CellEffects(data))
    got = CellEffects.concat(parts).assumed_correlation
    assert got == {"y|a": 0.3, "y|a (part 1)": 0.5}


def test_users_weigh_cells_without_counts_as_a_typical_cell() -> None:
    """Estimates made elsewhere may carry no user counts: in a mix of segments their
    cells count as the median counted cell (all 1 when no cell has counts)."""
    keys = pd.DataFrame({dims.EXPERIMENT: [1, 1, 2, 2], "region": ["EU", "NA", "EU", "NA"]})
    got = build(
        keys, [10, 30, 0, 0], [10, 50, 0, 0], np.zeros((4, 3)), np.tile(np.eye(3), (4, 1, 1)),
        outcome="y", proxies=["a", "b"], segments=["region"],
        directions={"a": "higher", "b": "lower"}, engine="test",
    )  # fmt: skip
    np.testing.assert_array_equal(got.users(), [20.0, 80.0, 50.0, 50.0])
    none = build(
        keys, [0] * 4, [0] * 4, np.zeros((4, 3)), np.tile(np.eye(3), (4, 1, 1)),
        outcome="y", proxies=["a", "b"], segments=["region"],
        directions={"a": "higher", "b": "lower"}, engine="test",
    )  # fmt: skip
    np.testing.assert_array_equal(none.users(), [1.0] * 4)


def test_arm_summaries_take_a_design() -> None:
    table = pd.DataFrame(
        {
            "exp": [1, 1, 2, 2],
            "arm": [0, 1, 0, 1],
            "n": [100, 100, 120, 110],
            "m_y": [0.0, 0.1, 0.0, 0.2],
            "v_y": [1.0, 1.1, 0.9, 1.0],
            "m_a": [0.0, 0.3, 0.0, 0.1],
            "v_a": [2.0, 2.1, 1.9, 2.0],
        }
    )
    kw: dict = {
        "experiment": "exp", "arm": "arm", "treated_value": 1, "outcome": "y",
        "proxies": ["a"], "count": "n", "mean": {"y": "m_y", "a": "m_a"},
        "variance": {"y": "v_y", "a": "v_a"},
    }  # fmt: skip
    assert ps.from_arm_summaries(table, **kw).designs == ["ab"]
    assert ps.from_arm_summaries(table, design="external", **kw).designs == ["external"]
    with pytest.raises(ParameterError, match=r"'design'.*'quasi'"):
        ps.from_arm_summaries(table, design="quasi", **kw)
