# Shelfwise: the user's interface. Every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export FEAST_USAGE := False
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-unit bench ingest features apply materialize train evaluate \
	serve replay drift drift-check build-bento lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## The whole flow on the real log, then exit.
demo: $(STAMP)
	$(PY) -m feature_repo demo
	$(PY) -m models train
	$(PY) -m bentos replay
	$(PY) -m monitoring drift

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: $(STAMP)
	$(PY) -m benchmarks

ingest: $(STAMP)
	$(PY) -m feature_repo ingest

features: $(STAMP)
	$(PY) -m feature_repo features
	$(PY) -m feature_repo apply
	$(PY) -m feature_repo materialize

apply: $(STAMP)
	$(PY) -m feature_repo apply

materialize: $(STAMP)
	$(PY) -m feature_repo materialize

train: $(STAMP)
	$(PY) -m models train

evaluate: $(STAMP)
	$(PY) -m models evaluate

serve: $(STAMP)
	$(PY) -m bentos serve

replay: $(STAMP)
	$(PY) -m bentos replay

drift: $(STAMP)
	$(PY) -m monitoring drift

drift-check: $(STAMP)
	$(PY) -m monitoring check

build-bento: $(STAMP)
	$(PY) -m bentos build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf data/events data/quarantine data/features data/feast data/models data/audit \
		data/reports data/*.parquet data/*.json
