# Two set-up commands on a fresh machine: `make bench` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint bench bench-targets clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

# The default benchmark. Until `wsbench sweep` and the HTML report exist, it runs the reference
# target benchmark and says so.
bench: install
	@echo "make bench: the full matrix (targets x echo/connect/broadcast x connection counts) and its"
	@echo "HTML report arrive with 'wsbench sweep'; running the reference-target benchmark now."
	$(PY) -m targets.bench

# Throughput and memory-per-connection of the three reference targets (a benchmark, not a test).
bench-targets: install
	$(PY) -m targets.bench

clean:
	rm -rf $(VENV) results .pytest_cache
