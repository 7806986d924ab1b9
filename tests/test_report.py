"""proxyscope.report: files, the JSON schema, agreement with the analyses, the warning banner,
figures, self-containedness, and a real headless browser."""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
import itertools
import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import proxyscope as ps
from proxyscope.errors import ConvergenceWarning, DataTypeError, ParameterError
from proxyscope.model.fit import ProxyFit
from proxyscope.reporting import SCHEMA_VERSION, load_schema, report
from proxyscope.reporting.build import FIGURES as EVERY_FIGURE
from proxyscope.reporting.render_html import BANNER_ID

jsonschema = pytest.importorskip("jsonschema")

#: The figures of the report with transport and compare (a sensitivity analysis comes
#: only from a spec run, its own test below; stability only from a fit with time,
#: tests/test_time_surfaces.py).
FIGURES = tuple(n for n in EVERY_FIGURE if n not in ("sensitivity", "stability"))
BASE_FIGURES = (
    "relation",
    "predictive_check",
    "diagnostics",
    "coefficients",
    "fragility",
    "weights",
    "surrogacy",
    "recommendations",
)
TARGET = {"IN / Mobile": 0.5, "NA / TV": 0.3, "EU / Desktop": 0.2}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- helpers -------------------------------------------------------------------


def quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an analysis on the (unconverged) test fit without its convergence warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return func(*args, **kwargs)


def plain(value: Any) -> Any:
    """A DataFrame cell as report.json stores it (NaN -> None, numpy -> Python)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    return value


def assert_rows_equal(rows: list[dict[str, Any]], frame: pd.DataFrame, columns: list[str]) -> None:
    assert len(rows) == len(frame)
    for i, (row, (_, rec)) in enumerate(zip(rows, frame.iterrows(), strict=True)):
        for col in columns:
            assert row[col] == plain(rec[col]), (
                f"row {i}, column {col}: {row[col]!r} != {rec[col]!r}"
            )


def validator() -> Any:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def strict_json(path: Path) -> dict[str, Any]:
    """Parse report.json, refusing NaN / Infinity tokens (not JSON)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"report.json contains the non-JSON number {token}")

    return dict(json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse))


class PassingFit(ProxyFit):
    """The test fit with diagnostics that pass: for rendering a trustworthy report.

    The small test fits are deliberately short and fail the production bar;
    this mocks the verdict at the report level without touching proxyscope's
    diagnostics.
    """

    def diagnostics(self, rhat_max: float = 1.01, ess_min: float = 400) -> Any:
        real = super().diagnostics(rhat_max, ess_min)
        table = real.table.assign(r_hat=1.001, ess_bulk=1000.0, ess_tail=1000.0, ok=True)
        return dataclasses.replace(real, table=table, divergences=0, passed=True)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def transport_result(small_fit: Any) -> Any:
    return quiet(ps.transport, small_fit, TARGET, random_seed=3)


@pytest.fixture(scope="module")
def comparison(small_fit: Any, small_fit_complete: Any) -> Any:
    return quiet(ps.compare, {"additive": small_fit, "complete": small_fit_complete}, refit=False)


@pytest.fixture(scope="module")
def untrusted(
    small_fit: Any, transport_result: Any, comparison: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Report of the (unconverged) small fit, with transport and compare."""
    assert small_fit.trustworthy is False
    out = tmp_path_factory.mktemp("report-untrusted")
    with pytest.warns(ConvergenceWarning, match="FAILED"):
        return report(small_fit, out=out, transport=transport_result, compare=comparison)


@pytest.fixture(scope="module")
def passing_fit(small_fit: Any) -> PassingFit:
    idata = copy.deepcopy(small_fit.idata)
    idata.attrs["proxyscope_trustworthy"] = "true"
    return PassingFit(idata)


@pytest.fixture(scope="module")
def trusted(passing_fit: PassingFit, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Report of a fit whose diagnostics pass, at ci=0.8, without transport or compare.

    A transport figure left in the directory by an earlier report must be removed.
    """
    out = tmp_path_factory.mktemp("report-trusted")
    (out / "figures").mkdir()
    (out / "figures" / "transport.png").write_bytes(b"stale")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trustworthy report warns about nothing
        return report(passing_fit, out=out, ci=0.8, title="Trusted | test report")


# -- files and schema ------------------------------------------------------------


def test_all_files_exist(untrusted: Any) -> None:
    out = untrusted.out
    for name in ("report.md", "report.json", "report.html"):
        assert (out / name).stat().st_size > 1000
    assert set(untrusted.figures) == set(FIGURES)
    for name in FIGURES:
        for ext in ("png", "svg"):
            path = out / "figures" / f"{name}.{ext}"
            assert untrusted.figures[name][ext] == path and path.stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "figures",
        "report.html",
        "report.json",
        "report.md",
    ]  # atomic writes leave no temporary files behind
    assert all(p.exists() for p in untrusted.paths())


def test_json_validates_against_schema(untrusted: Any, trusted: Any) -> None:
    check = validator()
    for files in (untrusted, trusted):
        doc = strict_json(files.json)
        errors = sorted(check.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
        assert doc == files.document
        assert doc["schema_version"] == SCHEMA_VERSION == "1.5.0"
        assert doc["proxyscope_version"] == ps.__version__
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(SCHEMA_VERSION)
    for key in ("diagnostics", "surrogacy", "fragility", "weights", "recommendations"):
        assert key in schema["required"] and schema["properties"][key]["description"]


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


BROKEN = {
    "missing diagnostics": ("del", ("diagnostics",)),
    "trustworthy as text": ("set", ("trustworthy", "no")),
    "probability above one": ("set", ("fragility", "rows", 0, "flip_prob", 1.5)),
    "unknown schema version": ("set", ("schema_version", "2.0.0")),
    "unknown top-level key": ("set", ("surprise", 1)),
    "weight direction two": ("set", ("weights", "rows", 0, "direction", 2)),
    "recommendation without its gain": ("del", ("recommendations", "rows", 0, "gain")),
    "transport without summary": ("del", ("transport", "summary")),
    "compare with one model": ("set", ("compare", "rows", [])),
    "number as text": ("set", ("diagnostics", "max_rhat", "1.04")),
    "warning of unknown kind": ("set", ("warnings", 0, "kind", "other")),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_broken_documents_fail_validation(untrusted: Any, how: str) -> None:
    doc = copy.deepcopy(untrusted.document)
    action, path = BROKEN[how]
    if action == "del":
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    else:
        _set(doc, path[:-1], path[-1])
    assert not validator().is_valid(doc)


# -- the numbers are the analyses' numbers ---------------------------------------------


def test_json_numbers_equal_the_analyses(
    untrusted: Any, small_fit: Any, transport_result: Any, comparison: Any
) -> None:
    doc = untrusted.document
    assert doc["ci"] == 0.9
    frag = quiet(ps.fragility, small_fit, ci=0.9, warn=False)
    assert_rows_equal(
        doc["fragility"]["rows"],
        frag,
        [
            "segment",
            "proxy",
            "flip_prob",
            "flip_lo",
            "flip_hi",
            "overall_flip",
            "flagged",
            "warning",
        ],
    )
    assert doc["fragility"]["warnings"] == frag.attrs["warnings"]
    assert doc["fragility"]["rows"][0]["levels"] == {
        c: str(frag.iloc[0][c]) for c in small_fit.segments
    }
    surr = quiet(ps.surrogacy, small_fit, ci=0.9)
    assert_rows_equal(
        doc["surrogacy"]["rows"], surr, ["scope", "segment", "proxy", "r2", "r2_lo", "r2_hi", "ste"]
    )
    w = quiet(ps.weights, small_fit, ci=0.9)
    assert_rows_equal(
        doc["weights"]["rows"],
        w,
        ["scope", "proxy", "weight", "weight_lo", "weight_hi", "direction"],
    )
    rec = quiet(ps.recommend, small_fit, ci=0.9)
    assert_rows_equal(
        doc["recommendations"]["rows"],
        rec,
        [
            "proxy",
            "decision_accuracy",
            "decision_lo",
            "decision_hi",
            "p_best",
            "ste",
            "fragile_segments",
            "recommendation",
        ],
    )
    assert doc["recommendations"]["recommendation"] == rec.iloc[0]["recommendation"]
    assert [r["rank"] for r in doc["recommendations"]["rows"]] == list(range(1, len(rec) + 1))
    coef = quiet(small_fit.summary, ci=0.9)
    assert_rows_equal(doc["coefficients"]["rows"], coef, ["scope", "parameter", "mean", "lo", "hi"])
    assert_rows_equal(
        doc["transport"]["summary"], transport_result.summary(0.9), ["quantity", "mean", "lo", "hi"]
    )
    shares = {r["segment"]: r["share"] for r in doc["transport"]["target"]}
    assert shares == pytest.approx(TARGET)
    table = comparison.table
    assert [r["model"] for r in doc["compare"]["rows"]] == list(table.index)
    assert_rows_equal(
        doc["compare"]["rows"],
        table,
        ["elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "n_high_k", "max_pareto_k"],
    )
    assert doc["compare"]["reading"] == comparison.reading()
    diag = small_fit.diagnostics().to_dict()
    for key in ("passed", "max_rhat", "min_ess_bulk", "divergences", "ebfmi", "failed_parameters"):
        assert doc["diagnostics"][key] == diag[key]
    data = doc["data"]
    assert data["n_cells"] == small_fit.effects.n_cells
    assert data["proxies"] == [
        {"name": p, "direction": "lower" if p == "rebuffer_rate" else "higher"}
        for p in small_fit.proxies
    ]
    assert data["segment_columns"] == list(small_fit.segments)
    assert doc["model"]["config_hash"] == small_fit.idata.attrs["proxyscope_config_hash"]
    assert doc["model"]["sampler"]["name"] == small_fit.sampler["name"]


def test_interval_level_follows_ci(trusted: Any, passing_fit: PassingFit) -> None:
    doc = trusted.document
    for key in ("coefficients", "surrogacy", "fragility", "weights", "recommendations"):
        assert doc[key]["ci"] == 0.8
    w = ps.weights(passing_fit, ci=0.8)
    assert_rows_equal(doc["weights"]["rows"], w, ["weight", "weight_lo", "weight_hi"])
    md = trusted.markdown.read_text(encoding="utf-8")
    html = trusted.html.read_text(encoding="utf-8")
    for text in (md, html):
        assert "80% equal-tailed" in text and "90%" not in text
    # Every table column holding an interval names its level.
    lines = md.splitlines()
    headers = [line for line, nxt in itertools.pairwise(lines) if nxt.startswith("|---")]
    assert headers
    for header in headers:
        if "[" in header:
            assert "[80%" in header, header
    assert all("80%" in f["title"] for n, f in doc["figures"].items() if "interval" in f["title"])


# -- the untrustworthy warning -------------------------------------------------------


def test_untrustworthy_banner_on_every_surface(untrusted: Any, small_fit: Any) -> None:
    failed = small_fit.diagnostics().failed["parameter"].iloc[0]
    md = untrusted.markdown.read_text(encoding="utf-8")
    assert md.startswith("> [!CAUTION]\n> **UNTRUSTWORTHY FIT.**")
    assert failed in md.split("# ", 1)[0]  # the failed parameters are named before the title
    html = untrusted.html.read_text(encoding="utf-8")
    body = html.split("<body>", 1)[1]
    assert body.lstrip().startswith(f'<div class="banner" id="{BANNER_ID}" role="alert">')
    assert body.index(BANNER_ID) < body.index("<h1>")
    assert "background: #b00020" in html and failed in body.split("<h1>")[0]
    doc = strict_json(untrusted.json)
    assert doc["trustworthy"] is False and doc["diagnostics"]["trustworthy"] is False
    first = doc["warnings"][0]
    assert first["kind"] == "convergence"
    assert "UNTRUSTWORTHY" in first["message"] and failed in first["message"]
    assert failed in doc["diagnostics"]["failed_parameters"]
    assert "Failed:" in doc["diagnostics"]["summary"]
    assert untrusted.trustworthy is False


def test_trustworthy_report_has_no_banner(trusted: Any) -> None:
    md = trusted.markdown.read_text(encoding="utf-8")
    html = trusted.html.read_text(encoding="utf-8")
    doc = strict_json(trusted.json)
    assert md.startswith("# Trusted | test report\n")
    for text in (md, html):
        assert "UNTRUSTWORTHY" not in text and "[!CAUTION]" not in text
    assert BANNER_ID not in html
    assert "Trusted | test report" in html and "<title>Trusted | test report</title>" in html
    assert doc["trustworthy"] is True and doc["diagnostics"]["passed"] is True
    assert all(w["kind"] != "convergence" for w in doc["warnings"])
    assert doc["transport"] is None and doc["compare"] is None
    assert set(doc["figures"]) == set(BASE_FIGURES)
    assert not (trusted.out / "figures" / "transport.png").exists()


# -- figures and self-containedness ------------------------------------------------


def test_figures_are_valid_png_and_svg(untrusted: Any) -> None:
    from PIL import Image

    for name, paths in untrusted.figures.items():
        data = paths["png"].read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("RGB"))
        assert width > 300 and height > 150
        assert (pixels < 200).any(), f"{name}.png is blank"
        root = ET.fromstring(paths["svg"].read_bytes())
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        assert root.get("viewBox") and len(list(root.iter())) > 20
        assert b"<text" not in paths["svg"].read_bytes()  # text as paths: no font needed


def test_html_is_self_contained(untrusted: Any) -> None:
    html = untrusted.html.read_text(encoding="utf-8")
    assert re.search(r"https?://", html) is None
    assert re.search(r"<script|<iframe|<object|<embed|@import|url\(", html, re.IGNORECASE) is None
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(FIGURES)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert all(
        link.startswith(("data:", "#")) or (untrusted.out / link).exists() for link in links
    ), links


def test_markdown_links_the_figures(untrusted: Any) -> None:
    md = untrusted.markdown.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(images) == sorted(f"figures/{n}.png" for n in FIGURES)
    assert all((untrusted.out / i).exists() for i in images)
    assert re.search(r"\bnan\b|\binf\b", md, re.IGNORECASE) is None
    for heading in (
        "## Data",
        "## Model",
        "## Diagnostics",
        "## Coefficients",
        "## Fragility",
        "## Weights",
        "## Surrogacy",
        "## Recommendations",
        "## Transport to the target population",
        "## Model comparison (LOO)",
    ):
        assert f"\n{heading}\n" in md


def test_plots_return_figure_and_axes(
    small_fit: Any, transport_result: Any, comparison: Any
) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from proxyscope.reporting import plots

    before = plt.get_fignums()
    results = [
        plots.plot_diagnostics(small_fit, n=2),
        plots.plot_coefficients(quiet(small_fit.summary)),
        plots.plot_fragility(quiet(ps.fragility, small_fit, warn=False)),
        plots.plot_weights(quiet(ps.weights, small_fit)),
        plots.plot_surrogacy(quiet(ps.surrogacy, small_fit)),
        plots.plot_recommendations(quiet(ps.recommend, small_fit)),
        plots.plot_transport(transport_result),
        plots.plot_compare(comparison),
    ]
    for fig, axes in results:
        assert isinstance(fig, Figure)
        assert len(np.atleast_1d(axes).ravel()) >= 1
    assert results[0][1].shape == (2, 2)
    assert plt.get_fignums() == before  # nothing left open in pyplot's registry


# -- inputs ------------------------------------------------------------------------


def test_a_report_shows_the_analyses_it_is_given(small_fit: Any, tmp_path: Path) -> None:
    # What a run computed at its own settings is what its report shows.
    frag = quiet(ps.fragility, small_fit, threshold=0.3, warn=False)
    surr = quiet(ps.surrogacy, small_fit, probability=0.8)
    rec = quiet(ps.recommend, small_fit, probability=0.8, threshold=0.3)
    files = quiet(
        report, small_fit, out=tmp_path, fragility=frag, surrogacy=surr, recommendations=rec
    )
    doc = files.document
    assert doc["fragility"]["threshold"] == 0.3
    assert doc["surrogacy"]["probability"] == 0.8
    assert doc["recommendations"]["probability"] == 0.8
    assert_rows_equal(doc["fragility"]["rows"], frag, ["flip_prob", "flip_lo", "flip_hi"])
    # Left out, an analysis is computed at its defaults.
    default = quiet(report, small_fit, out=tmp_path / "default").document
    assert default["fragility"]["threshold"] == 0.5
    assert default["surrogacy"]["probability"] == 0.95


def test_bad_inputs_are_refused(small_fit: Any, tmp_path: Path) -> None:
    with pytest.raises(DataTypeError, match="ProxyFit"):
        report("fit.nc", out=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="'ci'"):
        report(small_fit, out=tmp_path, ci=90)
    with pytest.raises(DataTypeError, match="'compare'"):
        report(small_fit, out=tmp_path, compare=[small_fit])
    with pytest.raises(DataTypeError, match=r"'fragility'.*proxyscope\.fragility"):
        report(small_fit, out=tmp_path, fragility={"flip_prob": 0.5})  # type: ignore[arg-type]
    at_80 = quiet(ps.recommend, small_fit, ci=0.8)
    with pytest.raises(ParameterError, match=r"'recommendations'.*ci=0\.8"):
        report(small_fit, out=tmp_path, recommendations=at_80)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="directory"):
        report(small_fit, out=tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_proxyscope_report_is_the_function_in_any_import_order(tmp_path: Path) -> None:
    import proxyscope.reporting as module

    # The subpackage is imported (by this file) before ps.report is looked up.
    assert ps.report is module.report is report
    with pytest.raises(DataTypeError, match="ProxyFit"):
        ps.report("not a fit", out=tmp_path)


# -- edge shapes: one proxy, no segment columns ------------------------------------------


@pytest.fixture(scope="module")
def one_proxy_fit(small_world: Any) -> Any:
    """One proxy, no segment columns: 20 cells, 2 chains x 100 draws (cached on disk)."""
    from conftest import STREAMING_ROLES, cached_fit

    roles = {**STREAMING_ROLES, "segments": [], "proxies": ["early_watch_min"], "directions": {}}

    def build() -> Any:
        effects = ps.summarize(small_world.users, engine="pandas", **roles)
        return ps.ProxyModel(pooling="additive", followups=0).fit(
            effects, draws=100, tune=100, chains=2, random_seed=5, progress=False
        )

    return cached_fit("report-one-proxy-no-segments", build)


def test_report_without_segments_and_one_proxy(one_proxy_fit: Any, tmp_path: Path) -> None:
    fit = one_proxy_fit
    assert fit.segments == () and fit.proxies == ("early_watch_min",)
    target = pd.DataFrame({"anything": [1, 2, 3]})  # no segment columns: the whole population
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        files = report(fit, out=tmp_path, transport=target, random_seed=1)
    doc = strict_json(files.json)
    assert validator().is_valid(doc)
    assert doc["data"]["segment_columns"] == [] and doc["data"]["segments"] == ["all"]
    assert [r["segment"] for r in doc["fragility"]["rows"]] == ["all"]
    assert doc["fragility"]["rows"][0]["levels"] == {}
    assert {r["proxy"] for r in doc["recommendations"]["rows"]} == {"early_watch_min", "composite"}
    assert doc["transport"]["target"][0]["share"] == 1.0
    assert all(p.stat().st_size > 0 for p in files.paths())
    assert "## Fragility" in files.markdown.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def one_proxy_segmented_fit(small_world: Any) -> Any:
    """One 'lower is better' proxy over device segments: 60 cells, 2 chains x 100 draws."""
    from conftest import STREAMING_ROLES, cached_fit

    roles = {**STREAMING_ROLES, "segments": ["device"], "proxies": ["rebuffer_rate"]}

    def build() -> Any:
        effects = ps.summarize(small_world.users, engine="pandas", **roles)
        return ps.ProxyModel(pooling="additive", followups=0).fit(
            effects, draws=100, tune=100, chains=2, random_seed=5, progress=False
        )

    return cached_fit("report-one-proxy-device", build)


def test_report_with_one_proxy(one_proxy_segmented_fit: Any, tmp_path: Path) -> None:
    fit = one_proxy_segmented_fit
    assert fit.segments == ("device",) and fit.proxies == ("rebuffer_rate",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        files = report(fit, out=tmp_path, transport={"Mobile": 2, "TV": 1}, random_seed=1)
    doc = strict_json(files.json)
    assert validator().is_valid(doc)
    assert doc["data"]["proxies"] == [{"name": "rebuffer_rate", "direction": "lower"}]
    assert doc["data"]["segment_levels"] == {"device": ["Desktop", "Mobile", "TV"]}
    assert len(doc["fragility"]["rows"]) == 3
    assert {r["levels"]["device"] for r in doc["fragility"]["rows"]} == {"Desktop", "Mobile", "TV"}
    assert [r["weight"] for r in doc["weights"]["rows"]] == pytest.approx([1.0] * 4)
    assert {r["segment"]: r["share"] for r in doc["transport"]["target"]} == pytest.approx(
        {"Mobile": 2 / 3, "TV": 1 / 3}
    )
    md = files.markdown.read_text(encoding="utf-8")
    assert "| rebuffer_rate | lower |" in md


# -- a real browser --------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    """Headless Debian chromium via chromedriver, fresh profile, no network (dead proxy)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install ...)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--proxy-server=127.0.0.1:9",  # any network request would fail
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_html_renders_in_headless_chromium(untrusted: Any, browser: Any, tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(untrusted.html.resolve().as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) == len(FIGURES)
    assert all(done and w > 0 and h > 0 for done, w, h in images), images
    banner = browser.find_element(By.ID, BANNER_ID)
    assert banner.is_displayed() and banner.location["y"] < 20
    assert "UNTRUSTWORTHY FIT" in banner.text
    shot = browser.get_screenshot_as_png()
    (tmp_path / "report.png").write_bytes(shot)
    assert shot.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(shot)) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert (pixels.sum(axis=2) < 3 * 250).mean() > 0.05  # not a blank page
    top = pixels[:60]
    red = (top[..., 0] > 150) & (top[..., 1] < 60) & (top[..., 2] < 60)
    assert red.mean() > 0.5  # the banner is red
    figure = browser.find_element(By.CSS_SELECTOR, "#figure-fragility img")
    with Image.open(io.BytesIO(figure.screenshot_as_png)) as image:
        heat = np.asarray(image.convert("RGB")).astype(int)
    assert ((heat[..., 0] - heat[..., 2]) > 60).mean() > 0.05  # the red heatmap is drawn
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_past_experiments_long_tables_and_each_warning_once(untrusted: Any, small_fit: Any) -> None:
    doc = untrusted.document
    past = doc["past_experiments"]
    assert past["n_experiments"] == len(small_fit.effects.experiments)
    assert past["n_inside"] == sum(r["inside"] for r in past["rows"])
    assert past["figures"] == ["relation", "predictive_check"]
    md = untrusted.markdown.read_text(encoding="utf-8")
    html = untrusted.html.read_text(encoding="utf-8")
    assert md.index("Past experiments and the learned relation") < md.index("## Data")
    assert f"holds {past['n_inside']} of {past['n_experiments']}" in md
    # Long tables are one click away in HTML; short ones stay open.
    assert "<details><summary>" in html and "rows)</summary><table>" in html
    # Each fragility warning appears once (in its section), At a glance counts them.
    for w in (w["message"] for w in doc["warnings"] if w["kind"] == "fragility"):
        assert md.count(w) == 1
    n_fragile = sum(w["kind"] == "fragility" for w in doc["warnings"])
    if n_fragile:
        assert f"{n_fragile} fragility warning(s): see Fragility." in md
    # Failed fits are marked wherever a comparison names them.
    rows = doc["compare"]["rows"]
    assert all("trustworthy" in r for r in rows)
    if rows[0]["trustworthy"] is False:
        assert "FAILED its diagnostics" in doc["compare"]["reading"]


def test_a_sensitivity_analysis_has_its_section_figure_and_schema(
    passing_fit: PassingFit, tmp_path: Path
) -> None:
    from proxyscope.reporting.sensitivity import COLUMNS

    rows = [
        (
            rho,
            scope,
            proxy,
            0.5 + rho / 4,
            0.4,
            0.7,
            1.0 - rho,
            0.8 - rho,
            1.2 - rho,
            0.8,
            0.7,
            0.9,
            rho < 0.6,
        )
        for rho in (0.0, 0.3, 0.6)
        for scope in ("overall", "NA / TV")
        for proxy in passing_fit.proxies[:2]
    ]
    table_ = pd.DataFrame(rows, columns=list(COLUMNS))
    files = quiet(ps.report, passing_fit, out=tmp_path, ci=0.8, sensitivity=table_)
    doc = files.document
    jsonschema.validate(doc, load_schema())
    sens = doc["sensitivity"]
    assert len(sens["rows"]) == len(rows) and sens["figure"] == "sensitivity"
    first = passing_fit.proxies[0]
    assert f"{first}: as the assumed correlation goes from 0 to 0.6" in sens["reading"]
    md = files.markdown.read_text(encoding="utf-8")
    assert "Sensitivity to the assumed noise correlation" in md and "| NO |" in md
    assert (tmp_path / "figures" / "sensitivity.png").read_bytes().startswith(PNG_MAGIC)
    # Without one, the section is null and no figure is left behind.
    again = quiet(ps.report, passing_fit, out=tmp_path, ci=0.8)
    assert again.document["sensitivity"] is None
    assert not (tmp_path / "figures" / "sensitivity.png").exists()
