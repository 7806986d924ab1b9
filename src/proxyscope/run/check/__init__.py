"""Check data against a spec without fitting (``proxyscope validate``).

Every problem found is collected (not only the first): missing or misspelled
columns, a column given two roles, non-numeric metrics, missing or infinite
values, a treatment column without exactly two values, a treated value that
is not among them, experiments with one arm, fewer than two experiments, and
for per-arm summaries negative counts or variances and repeated rows, for
estimates non-numeric or non-positive standard errors. When
none is found, the data are summarized for real (no model is fitted) so the
check is the one ``run`` will meet, and the kept and dropped cells are
reported.

User-level files are inspected with DuckDB queries that return a few rows;
the data are never loaded whole.

The checks live in ``users`` (user-level rows, by SQL), ``summaries``
(per-arm summary tables, ASOS), ``estimates`` (estimates made elsewhere) and
``designs`` (rows a design reads: did, rdd, ipw, synthetic_control);
what they found, in ``findings``. The ``[[data.extra]]`` sources are checked
by building the cells for real, with the main source's.
"""

from __future__ import annotations

import os

from proxyscope.errors import SpecError
from proxyscope.run.check.designs import check_design
from proxyscope.run.check.estimates import check_estimates
from proxyscope.run.check.findings import CheckResult, lower_first, result_lines
from proxyscope.run.check.summaries import check_arms, check_asos
from proxyscope.run.check.users import check_users
from proxyscope.run.preflight import check_spec
from proxyscope.spec import ModelSpec

__all__ = ["CheckResult", "check_data", "result_lines"]


def check_data(spec: ModelSpec, data: str | os.PathLike[str] | None = None) -> CheckResult:
    """Check the spec's data (or ``data`` instead), its sampler settings, transport
    target and weights ledger without fitting."""
    try:
        check_spec(spec)
    except SpecError as exc:
        result = check_data_only(spec, data)
        problem = lower_first(str(exc))
        if problem not in result.problems:  # a target file is read again with the cells
            result.problems.insert(0, problem)
        return result
    return check_data_only(spec, data)


def check_data_only(spec: ModelSpec, data: str | os.PathLike[str] | None = None) -> CheckResult:
    """The data checks of :func:`check_data`."""
    path = spec.data_path(data)
    if spec.data.kind == "asos":
        return check_asos(spec, path)
    if spec.data.kind == "arm_summaries":
        assert path is not None
        return check_arms(spec, path)
    if spec.data.kind == "estimates":
        assert path is not None
        return check_estimates(spec, path)
    if spec.data.reads_design:
        assert path is not None
        return check_design(spec, path)
    return check_users(spec, path)
