# The two set-up commands of the README: `make demo` and `make test`.
# The CPU build of torch is installed first, before anything that depends on torch,
# so pip never pulls the multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0

.PHONY: demo test setup setup-dev bench clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/semroute demo

test: setup-dev
	$(BIN)/python -m pytest -q

bench: setup-dev
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/cache_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
