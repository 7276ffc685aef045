# One virtualenv (.venv), created on first use. `make run` needs only the core install; the tests
# also need the test tools and the cluster extra (they serve the real model, torch included).
# `pip install` also builds statsd's native hot path (Rust, src/webops/statsd/native/) when cargo
# and Debian's crates are there (README: Install), and goes on without it when they are not.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
STAMP  := $(VENV)/.installed-dev

.PHONY: run test lint bench bench-webops bench-hostile bench-pgtop bench-vlogdump bench-cluster bench-cluster-eval bench-cluster-recycle bench-cmdlog bench-gate bench-store bench-fleet clean

NATIVE := src/webops/statsd/native
$(CORE): pyproject.toml $(NATIVE)/Cargo.toml $(wildcard $(NATIVE)/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(CORE)

$(STAMP): $(CORE) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

## run: the statsd daemon with its built-in defaults (UDP 127.0.0.1:8125, console 127.0.0.1:8126,
## HTTP 127.0.0.1:8127)
run: $(CORE)
	$(BIN)/webops statsd

## test: lint, the Rust unit tests, every test on the native hot path, then statsd's tests again
## on the Python reference (integration tests fail instead of skipping when CI=true); the fleet,
## store and dashboard tests run once: they check what lies past the flush (relays, caches,
## Prometheus, history, the browser), not the hot path
test: lint
	cd $(NATIVE) && cargo test --release --quiet
	$(BIN)/pytest
	WEBOPS_STATSD_HOTPATH=python $(BIN)/pytest tests/statsd --ignore-glob='tests/statsd/test_fleet_*.py' \
	  --ignore=tests/statsd/store --ignore=tests/statsd/dashboard

## lint: ruff (style, imports, formatting) and mypy (types, src/); the Rust crate held to the same
## standard: rustfmt and clippy with every warning an error
lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs/recipes
	$(BIN)/ruff format --check src tests bench docs/recipes
	$(BIN)/mypy
	cd $(NATIVE) && cargo fmt --check && cargo clippy --release --all-targets --quiet -- -D warnings

ETSY_JS := bench/.etsy/node_modules/statsd/stats.js
BLAST   := bench/.build/udpblast

## bench: webops against collectd's statsd plugin (if installed) and Etsy's statsd (npm), exact
## counts from a C sender, and a 10k-timer flush; the native parser on every line form; then the
## seed scenarios and the store beside graphite-web; prints figures, asserts nothing
bench: $(STAMP) $(ETSY_JS) $(BLAST)
	$(BIN)/python bench/statsd_race.py --sender $(BLAST) --etsy $(ETSY_JS) $(BENCH_ARGS)
	$(BIN)/python bench/statsd_hostile.py forms
	$(BIN)/python bench/statsd_bench.py --etsy $(ETSY_JS)
	$(BIN)/python bench/store_bench.py

$(BLAST): bench/udpblast.c
	mkdir -p $(dir $@)
	gcc -O2 -Wall -o $@ $<

## bench-webops: the same scenarios for webops alone (no node.js needed)
bench-webops: $(STAMP)
	$(BIN)/python bench/statsd_bench.py $(BENCH_ARGS)

## bench-hostile: what hostile input costs the statsd core; memory at the series limit; shutdowns
bench-hostile: $(STAMP)
	$(BIN)/python bench/statsd_hostile.py

## bench-pgtop: pgtop's client CPU per refresh against pg_activity's (installed from PyPI here)
bench-pgtop: $(STAMP)
	$(BIN)/pip install --quiet pg_activity
	$(BIN)/python bench/pgtop_bench.py $(BENCH_ARGS)

## bench-vlogdump: millions of Varnish transactions through vlogdump: lines/s and memory
bench-vlogdump: $(STAMP)
	$(BIN)/python bench/vlogdump_bench.py $(BENCH_ARGS)

## bench-cluster-eval: adjusted Rand index of each method on the tuning and held-out labelled sets
## (where the default method and the presets come from)
bench-cluster-eval: $(STAMP)
	$(BIN)/python bench/cluster_eval.py

## bench-cluster-recycle: requests lost across worker recycles (recycling on), per client kind
## (new connections, keep-alive http.client, keep-alive httpx)
bench-cluster-recycle: $(STAMP)
	$(BIN)/python bench/cluster_recycle.py $(BENCH_ARGS)

## bench-cmdlog: what the cmdlog snippet costs a shell per command, against none and the seed's recipe
bench-cmdlog: $(STAMP)
	$(BIN)/python bench/cmdlog_bench.py $(BENCH_ARGS)

## bench-gate: the publisher on 1M users; requests/s and varnishd CPU with the gate and without (wrk)
bench-gate: $(STAMP)
	$(BIN)/python bench/gate_bench.py $(BENCH_ARGS)

## bench-store: webops's /render and /metrics/find against graphite-web's (with carbon-cache) on the same
## 1,000 series x 24 h, side by side as a ratio; then the embedded store at the default maxSeries (500k)
## and 2M series: flush time, memory, disk, reads
bench-store: $(STAMP)
	$(BIN)/python bench/store_bench.py $(BENCH_ARGS)

## bench-fleet: a fleet end to end: daemons -> carbon-c-relay / carbon-relay -> carbon-caches (datapoints
## written/s, CPU of each part, exact loss), repeater to a central daemon vs. aggregates, /metrics scrape cost
bench-fleet: $(STAMP) $(BLAST)
	$(BIN)/python bench/fleet_bench.py --sender $(BLAST) $(BENCH_ARGS)

## bench-cluster: memory (PSS, per-worker USS) and speed of the clustering API, with and without preload;
## small-request p50/p99 alone and beside large requests, for new-connection and keep-alive clients
bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster_bench.py $(BENCH_ARGS)

$(ETSY_JS):
	npm install --silent --no-audit --no-fund --prefix bench/.etsy statsd@0.9.0

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis bench/.etsy bench/.build $(NATIVE)/target
