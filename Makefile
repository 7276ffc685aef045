# One virtualenv (.venv) holds webops and its test tools; every target creates it on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the statsd daemon with its built-in defaults (UDP 127.0.0.1:8125, console 127.0.0.1:8126)
run: $(STAMP)
	$(BIN)/webops statsd

## test: lint, then every test (integration tests fail instead of skipping when CI=true)
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

## bench: throughput and flush benchmarks; prints figures, asserts nothing
bench: $(STAMP)
	$(BIN)/python bench/statsd_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
