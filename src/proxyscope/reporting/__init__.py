"""Posterior reports of a fit: ``report.md``, ``report.json``, ``report.html`` and figures.

::

    files = proxyscope.report(fit, out="report/", transport=res, compare=cmp)
    files.html        # open in a browser: one self-contained file, no network

What is written into ``out``:

- ``report.json`` — every number, in a versioned layout (below);
- ``report.md`` — the same content as Markdown, figures linked from ``figures/``;
- ``report.html`` — the same content as one self-contained page: figures
  embedded as base64 PNG, inline CSS, no JavaScript, no web fonts, and a
  Content-Security-Policy that forbids any network fetch;
- ``figures/<name>.png`` and ``.svg`` — diagnostics, coefficients, fragility,
  weights, surrogacy, recommendations, and transport / compare when given, and
  stability for a fit whose relation moves over time.

The Markdown and HTML are renderings of the JSON document, so the three
surfaces always agree. When the fit failed its convergence diagnostics, every
surface says so first: a red banner at the top of the HTML, a CAUTION block at
the top of the Markdown, ``"trustworthy": false`` and a ``convergence``
warning naming the failed parameters in the JSON, and a red line on every
figure.

report.json (schema 1.5.0)
--------------------------
JSON Schema draft 2020-12, shipped as package data
(``proxyscope/reporting/schema/report.schema.json``, ``$id``
``urn:proxyscope:schema:report:1.5.0``; :func:`load_schema` reads it; every
field carries a ``description``). Conventions: intervals are equal-tailed at
the level in the enclosing section's ``ci`` (a fraction); NaN and infinities
are ``null``; effects are in original units with each proxy read in its good
direction. Top-level keys, all always present:

``schema_version``
    "1.5.0" (1.1: the three decision rules in recommendations, an unclear weight
    direction, compare rows say whether each fit passed; 1.2: ``designs``; 1.3: the
    designs' experiments with a shared error; 1.4: ``designs.diagnostics``, each
    design's own checks from the cells' metadata; 1.5: ``stability``, and for a fit
    with time ``model.periods`` and each analysis section's ``period``). Readers
    accept any 1.x; a major bump may rename or drop fields.
``proxyscope_version``, ``generated_at`` (ISO 8601 UTC), ``title``, ``ci``
``trustworthy``
    False when the fit failed its convergence diagnostics.
``warnings``
    List of {kind, message}; kind is convergence (always first when present),
    data, fragility, transport or compare.
``data``
    Outcome, proxies with directions, segment columns/levels/labels, cell,
    experiment and user counts, historical mix, dropped cells, assumed
    correlations (null if none), data fingerprint.
``model``
    Pooling, priors, full config and its hash, the proxyscope version that
    fitted it, sampler name/settings/seed/chains/tune/draws/timings.
``diagnostics``
    Diagnostics.to_dict() (R-hat, ESS, divergences, E-BFMI, tree depth,
    failed parameters, advice) plus the one-paragraph summary and the
    worst-mixing parameters.
``coefficients``, ``surrogacy``, ``fragility``, ``weights``, ``recommendations``
    {ci, rows, ...}: the rows of :meth:`ProxyFit.summary`,
    :func:`proxyscope.surrogacy`, :func:`proxyscope.fragility` (plus each
    row's segment ``levels``), :func:`proxyscope.weights` and
    :func:`proxyscope.recommend` (plus ``rank``), column for column.
``transport``
    null when no target was given; else {ci, conditional, proxy_effects,
    summary (TransportResult.summary rows), target (segments, shares,
    extrapolated), n_extrapolated, extrapolated_share, n_draws}.
``designs``
    null when every cell is a user-randomized A/B test; else {ci, reading,
    designs, bias, correlation, slopes} from :func:`proxyscope.design_bias`,
    and ``diagnostics``: per design whose cells carry diagnostics in their
    metadata (did, rdd, ipw, synthetic_control, cluster; every part of a
    concatenated history) a summary, a one-line reading and per-cell rows,
    worst first (:mod:`proxyscope.reporting.design_diagnostics`).
``compare``
    null when no comparison was given; else {kind, reading, rows (the
    Comparison table, one row per model, best first), refitted}.
``stability``
    null for a static fit; for a fit whose relation moves over time
    (``ProxyModel(time=...)``, DESIGN.md §9) {ci, probability, period (the one
    the analyses describe), readings, paths (each proxy's slope per period, with
    a forecast one period ahead), changes (between the compared periods, with
    P(changed))} from :func:`proxyscope.stability`. Such a fit's ``model`` also
    lists its ``periods`` (with the experiments that started in each), and each
    analysis section (coefficients, surrogacy, fragility, weights,
    recommendations, transport, past_experiments) names the ``period`` it
    describes: the latest unless ``report(..., period=...)`` chose another.
``figures``
    Figure name -> {png, svg (paths relative to ``out``), title}.
"""

from __future__ import annotations

from proxyscope.reporting.build import ReportFiles, report
from proxyscope.reporting.document import SCHEMA_ID, SCHEMA_VERSION, load_schema

__all__ = ["SCHEMA_ID", "SCHEMA_VERSION", "ReportFiles", "load_schema", "report"]
