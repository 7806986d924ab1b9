"""The README's Python example runs as written (at a small size: fewer users, draws and
chains; everything else verbatim)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

#: Size-only substitutions, so the example runs in a test's time.
SMALLER = (
    ("n_users=250_000", "n_users=40_000"),
    ("n_experiments=50", "n_experiments=16"),
    ("draws=1000, tune=1000, chains=4", "draws=150, tune=150, chains=2"),
)


def python_blocks(text: str) -> list[str]:
    """The README's ```python blocks that are complete programs (they import proxyscope;
    the one-line Spark fragment needs a cluster's session and is not one)."""
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if "import proxyscope as ps" in b]


def test_the_readme_has_its_example() -> None:
    blocks = python_blocks((REPO / "README.md").read_text())
    assert len(blocks) == 1
    for old, _ in SMALLER:
        assert old in blocks[0], old  # a substitution that no longer matches: update SMALLER


@pytest.mark.slow
# A small world at 150 draws warns (dropped small cells, failed diagnostics): expected.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = python_blocks((REPO / "README.md").read_text())
    for old, new in SMALLER:
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "report" / "report.html").is_file()
    assert {"fit", "effects", "new_cohort_users"} <= set(namespace)
