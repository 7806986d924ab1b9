"""The simplex solver of :func:`proxyscope.data.synthetic_control.synthetic_control`.

Donor weights on the simplex (w >= 0, Σ w = 1) that best reproduce the treated
unit's stacked pre-launch values: scipy's SLSQP with an analytic gradient, then
the exact minimizer on SLSQP's support when it satisfies the KKT conditions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize

#: SLSQP settings of every fit.
SLSQP_OPTIONS: dict[str, Any] = {"ftol": 1e-12, "maxiter": 1000}


def simplex_weights(target: np.ndarray, donors: np.ndarray) -> tuple[np.ndarray, bool]:
    """Donor weights on the simplex that best reproduce ``target`` (least squares).

    Parameters
    ----------
    target : (r,) array
        The treated unit's stacked pre-launch values.
    donors : (r, J) array
        The donors' values, one column per donor.

    Returns
    -------
    (w, success)
        ``w`` minimizes mean((target − donors @ w)²) subject to w >= 0 and
        Σ w = 1 (SLSQP's tiny negative values clipped to 0, then renormalized);
        ``success`` is SLSQP's flag.
    """
    r, n = donors.shape
    if n == 1:
        return np.ones(1), True
    # With Σ w = 1 the residual is (donors − target) @ w: a pure quadratic form.
    centred = donors - target[:, None]
    gram = centred.T @ centred / r

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        g = gram @ w
        return 0.5 * float(w @ g), g

    res = minimize(
        objective,
        np.full(n, 1.0 / n),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[
            {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}
        ],
        options=SLSQP_OPTIONS,
    )
    w = np.clip(np.asarray(res.x, dtype=float), 0.0, None)
    w /= w.sum()
    return _polish(gram, w), bool(res.success)


def _polish(gram: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact minimizer on SLSQP's support, when it satisfies the KKT conditions.

    On the support S the optimum solves the equality-constrained system
    G_SS w_S = λ 1, Σ w_S = 1; it is the simplex optimum when w_S > 0 and no
    donor off S has a smaller gradient (G w)_j < λ. Otherwise SLSQP's answer stays.
    """
    support = np.flatnonzero(w > 1e-9)
    k = len(support)
    system = np.zeros((k + 1, k + 1))
    system[:k, :k] = gram[np.ix_(support, support)]
    system[:k, k] = -1.0
    system[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        sol = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return w
    exact = np.zeros_like(w)
    exact[support] = sol[:k]
    grad = gram @ exact
    tol = 1e-9 * max(float(np.abs(np.diag(gram)).max()), 1e-300)
    if (sol[:k] > 0).all() and (grad >= sol[k] - tol).all():
        return exact / exact.sum()
    return w
