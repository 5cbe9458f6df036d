# Two commands on a fresh machine with Python 3.11: `make serve` and `make test`.
# Each creates .venv on first use and reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/cifar10-jpeg-train.zip

.PHONY: serve test lint format artifacts clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Serving runtime only: no torch.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[cpu]'
	touch $@

# Everything the test suite exercises: serving, training/export (torch==2.13.0 CPU), test tools.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[cpu,train,dev]'
	touch $@ $(VENV)/.serve-installed

# Settings come from NINSERVE_* (e.g. NINSERVE_PORT=9000 make serve) like any other start;
# `make serve PORT=9000 HOST=0.0.0.0` passes flags, which win over the environment.
SERVE_FLAGS := $(if $(filter command line,$(origin HOST)),--host $(HOST)) \
	$(if $(filter command line,$(origin PORT)),--port $(PORT))
serve: $(VENV)/.serve-installed
	$(BIN)/ninserve serve $(SERVE_FLAGS)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Rebuild everything shipped from model/training/checkpoint.pt: the fp32 artifact (export refuses
# on failed parity), its evaluation and model-card figures (stamped into each artifact's val_top1),
# the int8 variant and its evaluation, and the golden predictions the tests pin to the new model_version.
artifacts: $(VENV)/.dev-installed
	$(BIN)/ninserve export
	$(BIN)/ninserve eval --data $(DATA) --report-dir model/card --write-metadata
	$(BIN)/ninserve quantize --data $(DATA)
	$(BIN)/ninserve eval --data $(DATA) --model model/artifacts/nin-cifar10-int8.onnx --write-metadata
	$(BIN)/python -m tests.fixtures.golden

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
