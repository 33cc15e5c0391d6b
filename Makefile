# metamap: `make demo` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned here (a local CPU wheel on our machines) and installed before the package,
# so that the `torch>=2.4` range in pyproject never pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint typecheck unit bench bench-env tables clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/metamap demo --out runs/demo

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest

test: lint typecheck unit

# Benchmarks (not tests): results go to benchmarks/results/*.json, README tables come from them.
bench-env: venv
	$(PIP) install -q "cython>=3" setuptools wheel
	$(PIP) install -q --no-build-isolation "learn2learn==0.2.0"

tables: venv
	$(PY) benchmarks/make_tables.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
