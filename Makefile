# proxyscope: `make demo` runs the main job end to end, `make test` runs every check.
# Both create .venv/ at the repository root and install what they need into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CACHE := $(CURDIR)/.cache

# Compiled code is cached inside the project (PyTensor's for PyMC model graphs,
# Numba's and the sampler's generated modules), so it is compiled once.
export PYTENSOR_FLAGS ?= base_compiledir=$(CACHE)/pytensor
export NUMBA_CACHE_DIR ?= $(CACHE)/numba
export PROXYSCOPE_CACHE_DIR ?= $(CACHE)/proxyscope
export SPARK_LOCAL_IP ?= 127.0.0.1
export MPLBACKEND ?= Agg
# One rayon thread keeps seeded nutpie fits reproducible bit for bit.
export RAYON_NUM_THREADS ?= 1
# The real ASOS data (tests, notebook 06, models/asos_*.toml) live outside the
# repository: beside it in ../shared, or in this workplace's /work/shared.
ASOS_CANDIDATES := $(CURDIR)/../shared/data/asos/asos_digital_experiments.csv \
                   /work/shared/data/asos/asos_digital_experiments.csv
export PROXYSCOPE_ASOS_PATH ?= $(firstword $(wildcard $(ASOS_CANDIDATES)))

.PHONY: demo test lint typecheck pytest bench browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[fast]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/proxyscope demo

# Debian's chromium renders report.html in the browser tests.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { echo "installing Debian's chromium for the report tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy src

pytest: $(VENV)/.test-installed browser
	$(BIN)/pytest -n auto --nbmake --nbmake-timeout=900 tests notebooks

test: lint typecheck pytest

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(CACHE) proxyscope-demo .pytest_cache .mypy_cache .ruff_cache
