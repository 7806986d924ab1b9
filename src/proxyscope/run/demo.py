"""The demo's embedded spec: the simulated streaming world, run end to end.

It is ``models/streaming_retention.toml`` without its comparisons (a test
keeps the two equal), with the demo's title and output directory, so
``proxyscope demo`` needs no file from the repository. ``proxyscope demo
--compare`` adds the comparison with complete pooling.
"""

from __future__ import annotations

import json

from proxyscope.spec import ModelSpec, loads_spec

DEMO_OUT = "proxyscope-demo"

DESCRIPTION = (
    "A simulated streaming service with a planted failure cohort (Mobile x IN x New: "
    "treatments lift early engagement and lower retention). Which early metric stands in "
    "for long-term retention, where does it break, and what does a proxy win mean for a "
    "cohort that is mostly Mobile x IN x New?"
)

DEMO_TOML = """
spec_version = 1
name = "streaming_retention"
description = @DESCRIPTION@

[data]
kind = "users"
engine = "duckdb"
min_users_per_arm = 10

[data.simulate]
n_users = 250000
n_experiments = 50
seed = 7

[columns]
experiment = "exp_id"
treatment = "treatment"
treated_value = 1
outcome = "long_retained"
proxies = ["early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
segments = ["region", "device", "tenure"]
directions = { rebuffer_rate = "lower" }

[model]
pooling = "additive"
cell_correlation = "shared"
noise = "moderated"

[sampler]
name = "auto"
draws = 1000
tune = 1000
chains = 4
seed = 1

[analysis]
ci = 0.9
threshold = 0.5
probability = 0.95

[analysis.transport]
name = "Mobile x IN x New-heavy cohort"

[analysis.transport.shares]
"IN / Mobile / New" = 0.6
"IN / Mobile / Existing" = 0.15
"IN / TV / New" = 0.1
"NA / Mobile / New" = 0.15
""".replace("@DESCRIPTION@", json.dumps(DESCRIPTION))


def demo_spec() -> ModelSpec:
    """The demo's spec (title and output directory of the demo)."""
    spec = loads_spec(DEMO_TOML, origin="<demo>")
    from dataclasses import replace

    return replace(
        spec,
        report=replace(
            spec.report,
            title="proxyscope demo: which early metric predicts long-term retention?",
            out=DEMO_OUT,
        ),
    )


#: What ``proxyscope demo --compare`` adds: LOO against complete pooling, no refits.
DEMO_COMPARE = {"kind": "experiment", "poolings": ["complete"], "refit": False}
