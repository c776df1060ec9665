# make run: set up, then run the whole local pipeline in the foreground (Ctrl-C stops it).
# make test: set up, then lint, type-check, validate the compose file and run the full test suite
# against real services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint compose-check bench fuzz clean services peers

setup: $(VENV)/.installed $(VENV)/.native services console/web/node_modules/.package-lock.json

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The console's chart library (uPlot) from the npm registry, as its lockfile pins it.
console/web/node_modules/.package-lock.json: console/web/package-lock.json
	npm ci --prefix console/web --ignore-scripts --no-audit --no-fund

# The native OTLP -> Arrow decoder (native/, Rust, crates from crates.io as Cargo.lock pins them),
# built in release mode into the venv; cargo's cache in native/target makes a rebuild incremental,
# and it runs only when native/ changes.
NATIVE_SOURCES := $(wildcard native/Cargo.* native/pyproject.toml native/*.pyi native/src/*.rs)
$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --locked -q -m native/Cargo.toml
	touch $@

services:
	bash compose/native/install-kafka.sh
	bash compose/native/install-minio.sh

# The real peers the tests compare with (Prometheus, promtool, amtool, kcat, Chromium), from Debian.
peers:
	bash compose/native/install-peers.sh

run: setup
	$(BIN)/talonflow up

lint: $(VENV)/.installed $(VENV)/.native
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cargo fmt --manifest-path native/Cargo.toml --check
	cargo clippy --manifest-path native/Cargo.toml --release --locked -q -- -D warnings

# compose/docker-compose.yml cannot run here (no Docker engine); `docker compose config` validates it.
compose-check:
	bash compose/native/check-compose.sh

test: setup peers lint compose-check
	$(BIN)/pytest -ra

bench: setup
	$(BIN)/python -m bench.receiver
	$(BIN)/python -m bench.ingest --records 2000
	$(BIN)/python -m bench.rollups
	$(BIN)/python -m bench.lifecycle
	$(BIN)/python -m bench.fuzz_native --cases 1000000
	$(BIN)/python -m bench.tailer

# Every decoder and parser reachable from the network or a config file under atheris (libFuzzer),
# 1M cases each, niced: it runs for hours on two cores. Findings go to .talonflow/fuzz/.
fuzz: setup
	nice -n 10 $(BIN)/python -m bench.fuzz --cases 1000000

# Random kill -9 of supervised parts (each at least twice) under steady load on every way in, then
# a count of every acknowledged item in Parquet across tiers (bench/chaos.py; its own stack on ports
# 27000-27499). Exit 1 on loss or duplicates.
.PHONY: chaos
chaos: setup
	$(BIN)/python -m bench.chaos --rounds 22 --every 15 --seed 1

# Faults beyond kills under SDK load: Kafka away 60 s, MinIO away 10 min, the data disk full
# (bench/faults.py; one private stack per scenario on ports 28500-28999; the disk needs root).
.PHONY: faults
faults: setup
	$(BIN)/python -m bench.faults --kafka-away 60 --minio-away 600 --disk-full 60

# An hour of steady load on every way in, every part's RSS, CPU and open fds sampled, and the
# flows' consumer lag (bench/soak.py; its own stack on ports 29500-29519). Slopes leave out the
# first 15 minutes, which fill the resend memory (dedupe_window, 10 min) and Kafka's JIT (README,
# "Soak"). Exit 1 on an RSS slope over 1 MB per 10 min, an unbounded lag, a restart or a missing
# record. Samples in .talonflow/soak/.
.PHONY: soak
soak: setup
	nice -n 10 $(BIN)/python -m bench.soak --minutes 60 --warmup 900 --out .talonflow/soak

clean:
	rm -rf $(VENV) .talonflow
