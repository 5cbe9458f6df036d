# Two commands on a fresh machine with Python 3.11: `make serve` and `make test`.
# Each creates .venv on first use and reinstalls when pyproject.toml or its lock changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/cifar10-jpeg-train.zip

.PHONY: serve test lint format artifacts clean lock lock-check

# Installs come from the hashed locks under requirements/ (made by `make lock`), never from a fresh
# resolution; a lock that no longer matches pyproject.toml stops the install with what to do.
# ninserve itself is built with the locked build backend (requirements/build.txt) and
# --no-build-isolation, so no install step fetches an unhashed setuptools or wheel.
LOCK_CHECK = $(BIN)/python scripts/lock.py check
PIP_LOCKED = $(BIN)/pip install --require-hashes --progress-bar on
PIP_SELF = $(BIN)/pip install --no-deps --no-build-isolation --editable .

# pip itself comes from the lock too (requirements/build.txt: pip, setuptools, wheel); no staleness
# check here, or a pyproject.toml change would leave no venv to run `make lock` in.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes -r requirements/build.txt

# Serving runtime only: no torch.
$(VENV)/.serve-installed: pyproject.toml requirements/cpu.txt requirements/build.txt | $(BIN)/python
	@$(LOCK_CHECK) requirements/cpu.txt requirements/build.txt
	@echo "==> installing the serving runtime from requirements/cpu.txt (hash-checked; ~45 s the first time)"
	$(PIP_LOCKED) -r requirements/cpu.txt
	$(PIP_LOCKED) -r requirements/build.txt
	@echo "==> installing ninserve itself (editable, with the locked build backend)"
	$(PIP_SELF)
	touch $@

# Everything the test suite exercises: serving, training/export (torch, CPU build), test tools.
$(VENV)/.dev-installed: pyproject.toml requirements/dev.txt requirements/torch.txt requirements/build.txt | $(BIN)/python
	@$(LOCK_CHECK) requirements/dev.txt requirements/torch.txt requirements/build.txt
	@echo "==> installing test, lint and training dependencies from requirements/dev.txt (hash-checked)"
	$(PIP_LOCKED) -r requirements/dev.txt
	@echo "==> installing $$(grep '^torch==' requirements/torch.txt | cut -d' ' -f1) (the CPU build, ~200 MB, hash-checked: see deploy/README.md)"
	$(PIP_LOCKED) --no-deps -r requirements/torch.txt
	$(PIP_LOCKED) -r requirements/build.txt
	@echo "==> installing ninserve itself (editable, with the locked build backend)"
	$(PIP_SELF)
	$(BIN)/pip check
	touch $@ $(VENV)/.serve-installed

# Re-resolve pyproject.toml into requirements/*.txt (needs PyPI); commit the result. Run it after
# any dependency change in pyproject.toml: the installs above refuse a stale lock. It resolves as
# of the cutoff the locks record (`# exclude-newer:`), so it rewrites the same bytes; to move to
# newer releases: `make lock EXCLUDE_NEWER=now` (or an RFC 3339 time) and review the diff.
EXCLUDE_NEWER ?=
lock: | $(BIN)/python
	$(PIP_LOCKED) -r requirements/uv.txt
	$(BIN)/python scripts/lock.py $(if $(EXCLUDE_NEWER),--exclude-newer $(EXCLUDE_NEWER))
	$(LOCK_CHECK)

# Is the lock still reproducible? Re-resolves at the recorded cutoff into a temporary directory and
# prints, lock by lock, whether it came back byte for byte and which pins moved (exit 1 if any).
# It asks the live index, so CI prints it and does not gate on it; the gating checks (locks match
# pyproject.toml, hashed, build backend locked) are hermetic tests in tests/deploy/test_lock.py.
lock-check: | $(BIN)/python
	$(PIP_LOCKED) -r requirements/uv.txt
	$(BIN)/python scripts/lock.py reproduce

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
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Rebuild everything shipped from model/training/checkpoint.pt: the fp32 artifact (export refuses
# on failed parity), its evaluation and model-card figures (stamped into each artifact's val_top1),
# the int8 variant and its evaluation, and the golden predictions the tests pin to the new model_version.
artifacts: $(VENV)/.dev-installed
	$(BIN)/ninserve export --checkpoint model/training/checkpoint.pt --out model/artifacts/nin-cifar10.onnx --overwrite-tracked
	$(BIN)/ninserve eval --data $(DATA) --report-dir model/card --write-metadata
	$(BIN)/ninserve quantize --data $(DATA) --overwrite-tracked
	$(BIN)/ninserve eval --data $(DATA) --model model/artifacts/nin-cifar10-int8.onnx --write-metadata
	$(BIN)/python -m tests.fixtures.golden

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
