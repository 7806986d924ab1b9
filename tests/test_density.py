"""The compiled log posterior the samplers use, against the PyMC model it implements.

The samplers move a flat vector in data-chosen coordinates (partial centring
weights, a rotation of the slopes); the PyMC model of
:func:`proxyscope.model.builder.build_model` is written in the natural
non-centred coordinates. The two must be the same density up to the change
of variables: ``log p_compiled(x) = log p_pymc(T(x)) + log |det dT/dx|``,
with ``log |det dT/dx| = sum (w - 1) * log scale`` over the entries of the
blocks with a learned scale (the rotation is orthogonal).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import xarray as xr
from scipy.stats import ortho_group
from test_model_build import _cells

from proxyscope.model.builder import build_model
from proxyscope.model.followup import repilot
from proxyscope.model.native import NativeDensity
from proxyscope.model.priors import Priors
from proxyscope.model.setup import Prepared, prepare
from proxyscope.model.structure import SegmentStructure


def _random_coordinates(prepared: Prepared, seed: int) -> Prepared:
    rng = np.random.default_rng(seed)
    c = prepared.coordinates
    k = len(prepared.proxies)
    chosen = c.replace(
        rotation=ortho_group.rvs(k, random_state=seed) if k > 1 else np.eye(1),
        interaction=tuple(rng.uniform(0.0, 1.0, w.shape) for w in c.interaction),
        main=tuple(tuple(rng.uniform(0.0, 1.0, w.shape) for w in rows) for rows in c.main),
    )
    return prepared.with_coordinates(chosen)


def _natural_values(built: Any, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyMC model's value variables (log / logit transformed) from named draws."""
    model = built.model
    point = {}
    for value in model.value_vars:
        name = value.name
        shape = model.initial_point()[name].shape
        if name.endswith("_log__"):
            x = np.log(named[name.removesuffix("_log__")])
        elif name.endswith("_logodds__"):
            u = named[name.removesuffix("_logodds__")]
            x = np.log(u / (1.0 - u))
        else:
            x = named[name]
        point[name] = np.asarray(x, dtype=float).reshape(shape)
    return point


def _log_jacobian(prepared: Prepared, x: np.ndarray) -> float:
    layout = prepared.layout
    total = 0.0
    for block in layout.blocks:
        if block.kind != "value" or block.scale_offset < 0:
            continue
        lam = x[block.scale_offset : block.scale_offset + block.rows]
        c = prepared.coordinates
        if block.interaction:
            w = c.interaction[block.family]
        else:
            w = np.broadcast_to(c.main[block.family][block.column][:, None], (block.rows, 1))
        total += float(np.sum((np.broadcast_to(w, (block.rows, block.cols)) - 1.0) * lam[:, None]))
    return total


CASES = [
    ("additive", 2, "shared", 3),
    ("additive", 1, "shared", 5),
    ("additive", 3, "free", 2),
    ("exchangeable", 2, "shared", 5),
    ("complete", 2, "free", 5),
    ("none", 2, "shared", 5),
]


def _case(
    pooling: str, k: int, cell_correlation: str, min_levels: int, seed: int, coordinates_seed: int
) -> tuple[Any, Priors, Prepared, NativeDensity]:
    """Cells, priors, a preparation in random coordinates and its compiled density."""
    cells = _cells(seed=seed, k=k, interaction=0.3)
    # min_levels 3 gives the 3-level column a learned scale (its weights matter).
    priors = Priors(min_levels_learned_scale=min_levels)
    prepared = _random_coordinates(
        prepare(cells, pooling, priors, cell_correlation, "moderated"), seed=coordinates_seed
    )
    return cells, priors, prepared, NativeDensity(prepared.layout, prepared.data)


@pytest.mark.parametrize(("pooling", "k", "cell_correlation", "min_levels"), CASES)
def test_compiled_density_is_the_pymc_model_in_other_coordinates(
    pooling: str, k: int, cell_correlation: str, min_levels: int
) -> None:
    cells, priors, prepared, density = _case(pooling, k, cell_correlation, min_levels, 4, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_model(
            cells,
            pooling,
            priors,
            cell_correlation,
            noise="moderated",
            interaction_basis=prepared.coordinates.basis,
        )
        logp = built.model.compile_logp()
    rng = np.random.default_rng(11)
    gaps = []
    for _ in range(3):
        x = rng.normal(0.0, 0.5, density.n_dim)
        lp, _ = density.logp_and_grad(x)
        natural = _natural_values(built, prepared.layout.named(x))
        gaps.append(lp - (float(logp(natural)) + _log_jacobian(prepared, x)))
    # Equal up to one constant: PyMC's half-normal constant differs from the exact
    # one by ~2e-9 per scale; a wrong prior, map or Jacobian moves it by O(1).
    assert abs(gaps[0]) < 1e-5
    assert np.ptp(gaps) < 1e-9


@pytest.mark.parametrize(("pooling", "k", "cell_correlation", "min_levels"), CASES[:4])
def test_compiled_gradient_matches_finite_differences(
    pooling: str, k: int, cell_correlation: str, min_levels: int
) -> None:
    density = _case(pooling, k, cell_correlation, min_levels, 5, 7)[3]
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.5, density.n_dim)
    _, grad = density.logp_and_grad(x)
    h = 1e-6
    for i in range(density.n_dim):
        step = np.zeros(density.n_dim)
        step[i] = h
        fd = (density.logp_and_grad(x + step)[0] - density.logp_and_grad(x - step)[0]) / (2 * h)
        assert fd == pytest.approx(grad[i], rel=1e-5, abs=1e-5)


def test_interactions_are_what_main_effects_cannot_express() -> None:
    cells = _cells(seed=1, k=1)
    structure = prepare(cells, "additive", Priors(), "shared", "moderated").structure
    projector = structure.interaction_projector("additive")
    assert projector is not None
    # 6 segments = intercept + 2 region contrasts + 1 device contrast + 2 left.
    assert np.trace(projector) == pytest.approx(2.0)
    design = np.column_stack([np.ones(6), *structure.design()])
    np.testing.assert_allclose(projector @ design, 0.0, atol=1e-12)
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-12)
    # The axes the sampler uses: orthonormal, spanning that space, ordered by
    # the precision they are given.
    precision = np.array([1.0, 1.0, 1.0, 1.0, 50.0, 1.0])
    axes = structure.interaction_basis("additive", precision)
    np.testing.assert_allclose(axes.T @ axes, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(axes @ axes.T, projector, atol=1e-10)
    along = np.diag(axes.T @ np.diag(precision) @ axes)
    assert along[0] > along[1]
    # Exchangeable pooling: deviations from the global value, summing to zero.
    exchangeable = structure.interaction_projector("exchangeable")
    assert exchangeable is not None
    np.testing.assert_allclose(exchangeable, np.eye(6) - 1.0 / 6.0, atol=1e-12)
    # One segment column under additive pooling: every segment is a level of
    # it, and the main effect leaves nothing for an interaction.
    one = SegmentStructure(
        ("region",), (("EU", "IN", "NA"),), np.arange(3)[:, None], ("EU", "IN", "NA")
    )
    assert one.interaction_projector("additive") is None
    assert structure.interaction_projector("complete") is None


def _fake_draws(prepared: Prepared, pinned: int, rng: np.random.Generator) -> xr.Dataset:
    """Named draws in which one location interaction axis is pinned by the data
    (posterior sd 0.5% of its value) and the others are at their prior."""
    layout = prepared.layout
    n = 400
    x = np.zeros((1, n, layout.n_dim))
    for block in layout.blocks:
        if block.name == "loc_int_sd":
            x[0, :, block.offset : block.offset + block.size] = np.log(0.5) + rng.normal(
                0, 0.05, (n, block.size)
            )
    sd = np.exp(x[0, :, next(b for b in layout.blocks if b.name == "loc_int_sd").offset])
    raw = rng.standard_normal((n, layout.coordinates.interaction[0].size))
    raw[:, pinned] = (1.0 + 0.005 * rng.standard_normal(n)) / sd
    block = next(b for b in layout.blocks if b.name == "loc_int_z")
    x[0, :, block.offset : block.offset + block.size] = raw  # w = 1: u is the standard variate
    return layout.dataset(x)


def test_repilot_centres_what_the_data_pin_and_leaves_the_rest() -> None:
    cells = _cells(seed=2, k=1)
    prepared = prepare(cells, "additive", Priors(), "shared", "moderated")
    natural = prepared.coordinates.replace(
        interaction=tuple(np.ones_like(w) for w in prepared.coordinates.interaction)
    )
    prepared = prepared.with_coordinates(natural)
    rng = np.random.default_rng(0)
    draws = _fake_draws(prepared, pinned=1, rng=rng)
    chosen = repilot(prepared.layout, draws)
    w = chosen.interaction[0].reshape(-1)
    assert w[1] < 0.01  # pinned: centred
    others = np.delete(w, 1)
    assert np.all(others > 0.8)  # at the prior: non-centred
    # The rotation and the other families are left as they were.
    np.testing.assert_array_equal(chosen.rotation, prepared.coordinates.rotation)
