"""Warnings on the fitted cells of a synthetic control.

For :func:`proxyscope.data.synthetic_control.synthetic_control`: the
thresholds of its diagnostics (poor pre-launch fit, few donors) and
:func:`warn_cells`, which gives one DataWarning per failed diagnostic, naming
the cells (the rules are in the module docstring of
:mod:`proxyscope.data.synthetic_control`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope.data.cellchecks import describe_cell
from proxyscope.errors import DataWarning

#: Poor fit: the outcome's pre-launch RMSE above this multiple of the median placebo's.
POOR_FIT_MULTIPLE = 2.0
#: Fewer donors than this in a kept cell: a DataWarning (the placebo covariance is noisy).
FEW_DONORS = 20


def warn_cells(rows: Sequence[Mapping[str, Any]], *, owner: str) -> None:
    """One DataWarning per failed diagnostic, naming the cells (rows of the fit's meta)."""
    checks: list[tuple[str, str]] = [
        (
            "poor_fit",
            "have a poor pre-launch fit: the outcome's pre-launch RMSE exceeds its post-launch "
            f"gap and {POOR_FIT_MULTIPLE:g} x the median placebo's, so the gap may be fit "
            "error and the placebo covariance too small (the treated unit may lie outside "
            "the donors' convex hull; see meta['synthetic_control']['cells'])",
        ),
        (
            "few_donors",
            f"have fewer than {FEW_DONORS} donors: the placebo covariance rests on few "
            "placebos and is noisy",
        ),
        (
            "not_converged",
            "had a weight fit (treated or placebo) where SLSQP did not report success",
        ),
    ]
    failed = {
        "poor_fit": [bool(r["poor_fit"]) for r in rows],
        "few_donors": [int(r["n_donors"]) < FEW_DONORS for r in rows],
        "not_converged": [not r["converged"] for r in rows],
    }
    for name, text in checks:
        hit = [
            describe_cell(r["experiment"], r["segment_label"])
            for r, f in zip(rows, failed[name], strict=True)
            if f
        ]
        if hit:
            shown = "; ".join(hit[:5]) + (f"; ... ({len(hit)} in all)" if len(hit) > 5 else "")
            warnings.warn(
                f"{owner}: {len(hit)} of {len(rows)} cells {text}: {shown}.",
                DataWarning,
                stacklevel=3,
            )
