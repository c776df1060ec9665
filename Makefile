# make run: set up, then run the whole local pipeline in the foreground (Ctrl-C stops it).
# make test: set up, then lint, type-check, validate the compose file and run the full test suite
# against real services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint compose-check bench clean services peers

setup: $(VENV)/.installed services

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

services:
	bash compose/native/install-kafka.sh
	bash compose/native/install-minio.sh

# The real peers the tests compare with (Prometheus, promtool, amtool, kcat, Chromium), from Debian.
peers:
	bash compose/native/install-peers.sh

run: setup
	$(BIN)/talonflow up

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

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

clean:
	rm -rf $(VENV) .talonflow
