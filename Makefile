# The two commands a newcomer needs: `make run` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8288
# An app whose functions run in the server's process, e.g. `make run APP=examples.shop:hw`.
APP ?=

.PHONY: run test lint typecheck pytest bench bench-ingest bench-flow bench-queue bench-http bench-dashboard install install-dev format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Start the dev server on 127.0.0.1:8288 with SQLite under .headwater/
run: install
	$(BIN)/headwater dev $(APP) --host $(HOST) --port $(PORT)

## ruff + mypy --strict + the whole pytest suite
test: install-dev lint typecheck pytest

lint: install-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: install-dev
	$(BIN)/mypy src

pytest: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

format: install-dev
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

## Load benchmarks (not part of `make test`); figures go in the README's performance table
bench: bench-ingest bench-flow bench-queue bench-http bench-dashboard

bench-ingest: install-dev
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

## Dashboard pages with 1,000,000 events and 1,000,000 runs in SQLite
bench-dashboard: install-dev
	$(BIN)/python bench/dashboard.py $(BENCH_ARGS)

## Flow control's cost: 10,000 runs over 100 concurrency keys (limit 2) against no limits
bench-flow: install-dev
	$(BIN)/python bench/flow.py $(BENCH_ARGS)

## A million delayed queue items: idle CPU and run latency against an empty queue
bench-queue: install-dev
	$(BIN)/python bench/queue_idle.py $(BENCH_ARGS)

## Runs over HTTP: a 3-step function served by the official Python SDK and by hw.serve()
bench-http: install-dev
	$(BIN)/python bench/http_runs.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
