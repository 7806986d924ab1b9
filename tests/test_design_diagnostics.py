"""Each design's diagnostics in the report (report.json ``designs.diagnostics``).

Cells of every design come from its small simulated world; the diagnostics the
report shows are checked against the design's own metadata, computed here
again from ``meta`` with plain loops (failing cells, smallest p-values,
bandwidth sensitivity in standard errors, overlap and balance, pre-launch fit
against the gap, cluster counts and inflation). One small fit on a
concatenated history of all five designs checks that report.json validates
and that the Markdown shows every design's table.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import jsonschema
import numpy as np
import pytest

import proxyscope as ps
from proxyscope import simulate
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.clustered import FEW_CLUSTERS
from proxyscope.data.ipw import ipw
from proxyscope.data.ipw_checks import OUTSIDE_SHARE
from proxyscope.errors import DataWarning
from proxyscope.reporting import load_schema
from proxyscope.reporting.blocks import Para, Table
from proxyscope.reporting.design_diagnostics import diagnostics_doc
from proxyscope.reporting.designs import MAX_ROWS, diagnostics_blocks
from proxyscope.simulate.optin_world import optin

SEGMENTS = ["region"]


def quiet(make: Callable[[], ps.CellEffects]) -> ps.CellEffects:
    """Cells from a design whose DataWarnings (few clusters, donors, ...) are not the point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return make()


def prefixed(frame: Any, column: str, prefix: str) -> Any:
    """A copy with experiment ids made distinct across designs (for concatenation)."""
    out = frame.copy()
    out[column] = prefix + out[column].astype(str)
    return out


def key(row: Any) -> tuple[str, str]:
    """(experiment, segment label) of a row of a design's meta."""
    return str(row["experiment"]), str(row.get("segment_label", row.get("segment")))


def keys(rows: Any) -> set[tuple[str, str]]:
    return {key(r) for r in rows}


def cell_row(rows: Any, shown: Any) -> Any:
    """The meta row of the cell a diagnostics row shows."""
    return next(r for r in rows if key(r) == (shown["experiment"], shown["segment"]))


# -- cells of each design (small worlds, region segments so they concatenate) ----------


@pytest.fixture(scope="module")
def did_cells() -> ps.CellEffects:
    world = simulate.rollout(n_experiments=4, n_units=80, violation=0.4, seed=5)
    roles = world.column_roles()
    with pytest.warns(DataWarning, match="pre-trend"):
        return ps.did(prefixed(world.panel, roles["experiment"], "did-"), **roles)


@pytest.fixture(scope="module")
def rdd_cells() -> ps.CellEffects:
    world = simulate.threshold(n_experiments=3, n_users=6000, manipulation=0.25, seed=2)
    roles = {**world.column_roles(), "segments": SEGMENTS}
    with pytest.warns(DataWarning, match="density"):
        return ps.rdd(prefixed(world.rows, roles["experiment"], "rdd-"), **roles)


@pytest.fixture(scope="module")
def sc_cells() -> ps.CellEffects:
    world = simulate.launch(n_experiments=3, n_markets=12, segments=tuple(SEGMENTS), seed=2)
    roles = world.column_roles()
    return quiet(
        lambda: ps.synthetic_control(prefixed(world.panel, roles["experiment"], "sc-"), **roles)
    )


@pytest.fixture(scope="module")
def ipw_cells() -> ps.CellEffects:
    world = optin(n_experiments=3, users_per_experiment=600, selection=1.0, seed=5)
    roles = {**world.column_roles(), "segments": SEGMENTS}
    with pytest.warns(DataWarning, match="poor overlap"), pytest.warns(DataWarning, match="SMD"):
        return ipw(prefixed(world.users, roles["experiment"], "ipw-"), **roles)


@pytest.fixture(scope="module")
def cluster_cells() -> ps.CellEffects:
    world = simulate.workspace(n_experiments=4, n_workspaces=40, seed=3)
    roles = {**world.column_roles(), "segments": SEGMENTS}
    roles.pop("exposure")
    return quiet(lambda: ps.summarize(prefixed(world.users, roles["experiment"], "cl-"), **roles))


# -- each design's diagnostics against its metadata ------------------------------------


def test_did_failing_cells_are_those_below_the_pretrend_level(did_cells: ps.CellEffects) -> None:
    meta = did_cells.meta["did"]
    d = diagnostics_doc(did_cells)["did"]
    level = meta["pretrend_level"]
    p = {(str(r["experiment"]), r["segment_label"]): r["pretrend_p_cell"] for r in meta["cells"]}
    failing = {k for k, v in p.items() if v is not None and v < level}
    assert 0 < len(failing) < len(p)  # the world has failing and passing cells
    assert {(r["experiment"], r["segment"]) for r in d["rows"] if r["failing"]} == failing
    assert d["failing"] == len(failing) == meta["pretrend_failing_cells"]
    assert d["cells"] == did_cells.n_cells == len(d["rows"])
    assert d["level"] == level
    assert d["min_p"] == min(v for v in p.values() if v is not None)
    assert [r["p"] for r in d["rows"]] == sorted(r["p"] for r in d["rows"])
    for r in d["rows"]:
        per = cell_row(meta["cells"], r)["pretrend_p"]
        assert r["metric"] == min(per, key=per.get)
    assert f"{len(failing)} of {did_cells.n_cells} cells fail" in d["reading"]


def test_rdd_density_failures_bandwidths_and_sensitivity(rdd_cells: ps.CellEffects) -> None:
    meta = rdd_cells.meta["rdd"]
    d = diagnostics_doc(rdd_cells)["rdd"]
    alpha = meta["density_alpha"]
    failing = {
        (str(r["experiment"]), r["segment_label"])
        for r in meta["cells"]
        if r["density"]["p_holm"] is not None and r["density"]["p_holm"] < alpha
    }
    assert 0 < len(failing) < rdd_cells.n_cells
    assert d["failing"] == len(failing) == meta["density_failed"]
    assert {(r["experiment"], r["segment"]) for r in d["rows"] if r["failing"]} == failing
    widths = [r["bandwidth"] for r in meta["cells"]]
    assert d["bandwidth"]["min"] == min(widths) and d["bandwidth"]["max"] == max(widths)
    assert d["bandwidth"]["median"] == pytest.approx(float(np.median(widths)), rel=1e-12)
    metrics = list(rdd_cells.metrics)
    for r in d["rows"]:
        table = [
            t
            for t in meta["sensitivity"]
            if str(t["experiment"]) == r["experiment"] and t["segment_label"] == r["segment"]
        ]
        base = next(t for t in table if t["factor"] == 1.0)
        moves = [
            (abs(t["effect"][m] - base["effect"][m]) / base["se"][m], m, t["factor"])
            for t in table
            if t["factor"] != 1.0 and t["effect"] is not None
            for m in metrics
        ]
        top = max(moves)
        assert r["shift"] == pytest.approx(top[0], rel=1e-12)
        assert (r["shift_metric"], r["shift_factor"]) == (top[1], top[2])
        outcome = [t["effect"][metrics[0]] for t in table if t["effect"] is not None]
        assert (r["outcome_min"], r["outcome_max"]) == (min(outcome), max(outcome))
    assert d["max_shift"] == max(r["shift"] for r in d["rows"])
    assert [r["failing"] for r in d["rows"]] == sorted(
        (r["failing"] for r in d["rows"]), reverse=True
    )


def test_ipw_overlap_and_balance(ipw_cells: ps.CellEffects) -> None:
    meta = ipw_cells.meta["ipw"]
    d = diagnostics_doc(ipw_cells)["ipw"]
    poor = {
        (str(r["experiment"]), r["segment_label"])
        for r in meta["cells"]
        if r["share_outside_band"] > OUTSIDE_SHARE
    }
    assert 0 < len(poor) < ipw_cells.n_cells
    assert poor == keys(meta["poor_overlap_cells"])
    assert {(r["experiment"], r["segment"]) for r in d["rows"] if r["poor_overlap"]} == poor
    assert d["poor_overlap"] == len(poor)
    arms = [r[a] for r in meta["cells"] for a in ("treated", "control")]
    assert d["propensity_min"] == min(a["propensity_min"] for a in arms)
    assert d["propensity_max"] == max(a["propensity_max"] for a in arms)
    assert d["min_ess"] == min(a["effective_n"] for a in arms)
    by_exp = {
        str(e["experiment"]): max(abs(v["after"]) for v in e["smd"].values())
        for e in meta["experiments"]
    }
    assert d["max_smd"] == max(by_exp.values())
    assert by_exp[d["max_smd_experiment"]] == d["max_smd"]
    assert d["unbalanced_experiments"] == [str(e) for e in meta["unbalanced_experiments"]]
    assert 0 < len(d["unbalanced_experiments"]) < 3
    for r in d["rows"]:
        cell = cell_row(meta["cells"], r)
        assert r["max_smd"] == max(abs(v["after"]) for v in cell["smd"].values())
        assert r["ess_treated"] == cell["treated"]["effective_n"]


def test_synthetic_control_fit_against_the_gap(sc_cells: ps.CellEffects) -> None:
    meta = sc_cells.meta["synthetic_control"]
    d = diagnostics_doc(sc_cells)["synthetic_control"]
    outcome = sc_cells.outcome
    gap = {
        (str(e), str(s)): float(v)
        for e, s, v in zip(
            sc_cells.experiment, sc_cells.segment_label, sc_cells.effect[:, 0], strict=True
        )
    }
    assert d["cells"] == sc_cells.n_cells == len(d["rows"])
    assert d["poor_fit"] == sum(r["poor_fit"] for r in meta["cells"])
    assert d["not_converged"] == sum(not r["converged"] for r in meta["cells"])
    assert d["min_donors"] == min(r["n_donors"] for r in meta["cells"])
    assert d["min_p"] == min(r["p_value"][outcome] for r in meta["cells"])
    for r in d["rows"]:
        cell = cell_row(meta["cells"], r)
        k = (r["experiment"], r["segment"])
        assert r["gap"] == gap[k]
        assert r["pre_rmse"] == cell["pre_rmse"][outcome]
        assert r["rmse_to_gap"] == pytest.approx(cell["pre_rmse"][outcome] / abs(gap[k]))
        assert r["poor_fit"] == cell["poor_fit"]
        if r["poor_fit"]:  # the design's rule: pre-launch RMSE above the gap
            assert r["rmse_to_gap"] > 1
    order = [(not r["poor_fit"], -r["rmse_to_gap"]) for r in d["rows"]]
    assert order == sorted(order)


def test_poor_synthetic_fits_come_first_and_are_counted(sc_cells: ps.CellEffects) -> None:
    meta = sc_cells.meta
    rows = meta["synthetic_control"]["cells"]
    rows[-1]["poor_fit"], rows[0]["converged"] = True, False
    data = sc_cells.data.copy()
    data.attrs[META_ATTR] = json.dumps(meta)
    d = diagnostics_doc(ps.CellEffects(data))["synthetic_control"]
    assert (d["poor_fit"], d["not_converged"]) == (1, 1)
    assert (d["rows"][0]["experiment"], d["rows"][0]["segment"]) == key(rows[-1])
    assert "1 of 12 cells are poor fits" in d["reading"]
    assert "1 of 12 fits did not converge" in d["reading"]


def test_cluster_counts_inflation_and_shared_error(cluster_cells: ps.CellEffects) -> None:
    from proxyscope.data import designs

    meta = cluster_cells.meta["cluster"]
    d = diagnostics_doc(cluster_cells)["cluster"]
    treat = cluster_cells.variable(designs.N_CLUSTERS_TREAT)
    control = cluster_cells.variable(designs.N_CLUSTERS_CONTROL)
    assert d["column"] == "workspace"
    assert (d["min_clusters_treat"], d["min_clusters_control"]) == (treat.min(), control.min())
    assert d["few_clusters"] == int(np.sum(np.minimum(treat, control) < FEW_CLUSTERS))
    assert d["shared_error_experiments"] == meta["shared_noise"]["experiments_with_shared"] > 0
    assert [r["metric"] for r in d["rows"]] == list(cluster_cells.metrics)
    for r in d["rows"]:
        assert r["inflation"] == meta["experiment_variance_inflation"][r["metric"]]
        assert r["unexplained"] == meta["experiment_variance_inflation_unexplained"][r["metric"]]


# -- histories: concatenated, subsets, hand-built -------------------------------------


@pytest.fixture(scope="module")
def history(
    did_cells: ps.CellEffects,
    rdd_cells: ps.CellEffects,
    sc_cells: ps.CellEffects,
    ipw_cells: ps.CellEffects,
    cluster_cells: ps.CellEffects,
) -> ps.CellEffects:
    return ps.CellEffects.concat([did_cells, rdd_cells, sc_cells, ipw_cells, cluster_cells])


def test_a_concatenated_history_keeps_every_designs_diagnostics(
    history: ps.CellEffects,
    did_cells: ps.CellEffects,
    rdd_cells: ps.CellEffects,
    sc_cells: ps.CellEffects,
    ipw_cells: ps.CellEffects,
    cluster_cells: ps.CellEffects,
) -> None:
    got = diagnostics_doc(history)
    alone = {
        "did": did_cells,
        "rdd": rdd_cells,
        "synthetic_control": sc_cells,
        "ipw": ipw_cells,
        "cluster": cluster_cells,
    }
    assert list(got) == ["cluster", "did", "rdd", "ipw", "synthetic_control"]
    for design, cells in alone.items():
        assert got[design] == diagnostics_doc(cells)[design], design
    # Concatenated again (parts stay flat), and with one part twice removed.
    again = ps.CellEffects.concat([ps.CellEffects.concat([did_cells, rdd_cells]), sc_cells])
    assert set(diagnostics_doc(again)) == {"did", "rdd", "synthetic_control"}


def test_only_the_cells_of_the_fit_are_read(history: ps.CellEffects) -> None:
    keep = [e for e in history.experiments if str(e) in ("did-0", "rdd-1", "cl-2")]
    got = diagnostics_doc(history.subset(keep))
    assert set(got) == {"did", "rdd", "cluster"}
    assert {r["experiment"] for r in got["did"]["rows"]} == {"did-0"}
    assert {r["experiment"] for r in got["rdd"]["rows"]} == {"rdd-1"}
    assert got["cluster"]["cells"] == int(np.sum(history.subset(["cl-2"]).design == "cluster"))


def test_cells_without_diagnostics_show_nothing() -> None:
    cells = simulate.mixed_history(seed=1).effects
    assert set(cells.designs) - {"ab", "cluster", "external"}  # biased designs, by hand
    assert diagnostics_doc(cells) == {}
    assert diagnostics_blocks({}) == []


# -- blocks and the full report ---------------------------------------------------------


def test_tables_are_short_and_count_the_rest(history: ps.CellEffects) -> None:
    got = diagnostics_doc(history)
    blocks = diagnostics_blocks(got)
    tables = [b for b in blocks if isinstance(b, Table)]
    readings = [b for b in blocks if isinstance(b, Para)]
    assert len(tables) == len(readings) == len(got)
    for (design, d), t in zip(got.items(), tables, strict=True):
        assert len(t.rows) == min(len(d["rows"]), MAX_ROWS)
        more = len(d["rows"]) - MAX_ROWS
        assert (f"; {more} more" in (t.caption or "")) == (more > 0), design
    did = tables[list(got).index("did")]
    flagged = [r["failing"] for r in got["did"]["rows"][:MAX_ROWS]]
    assert [m[did.columns.index("fails")] for m in did.marked or []] == flagged
    assert sum(map(sum, did.marked or [])) == sum(flagged)  # only the flag is marked
    cluster = tables[0]
    assert cluster.columns[0] == "metric"  # one part: no part column


@pytest.fixture(scope="module")
def report_doc(history: ps.CellEffects, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ps.ProxyModel(pooling="complete", followups=0).fit(
            history, draws=150, tune=150, chains=2, random_seed=1, progress=False
        )
        return ps.report(fit, out=tmp_path_factory.mktemp("design_diagnostics"))


def test_the_report_shows_each_designs_diagnostics(
    report_doc: Any, history: ps.CellEffects
) -> None:
    doc = report_doc.document
    jsonschema.validate(doc, load_schema())
    assert doc["designs"]["diagnostics"] == diagnostics_doc(history)
    markdown = report_doc.markdown.read_text()
    html = report_doc.html.read_text()
    for design, d in doc["designs"]["diagnostics"].items():
        assert f"{design}: {d['reading']}" in markdown
        assert d["reading"].split(":")[0] in html
    assert "| experiment | segment | treated / comparison units | pre-trend p |" in markdown
    assert "| metric | inflation | left after the shared error |" in markdown
    for header in ("density p (Holm)", "propensity treated", "RMSE / \\|gap\\|"):
        assert header in markdown


def test_the_schema_rejects_a_malformed_diagnostics_entry(report_doc: Any) -> None:
    import copy

    doc = copy.deepcopy(report_doc.document)
    doc["designs"]["diagnostics"]["did"]["rows"][0]["failing"] = "no"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema())
    doc = copy.deepcopy(report_doc.document)
    doc["designs"]["diagnostics"]["unknown_design"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema())
