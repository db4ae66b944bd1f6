# Two entry points: `make study` (set up, then run the main job) and `make test`.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: setup study lint test test-fast llama-cpp clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

study: $(STAMP)
	$(VENV)/bin/lorp study $(ARGS)

# Import direction between lorp's packages (docs/architecture.md), checked before the tests.
lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo

test: lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The fast tier: no real model, no notebook, no Ray (docs/testing.md).
test-fast: lint
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Optional: llama.cpp itself (npm's node-llama-cpp ships it prebuilt) for tests/test_llama_cpp.py and
# benchmarks/llama_cpp.py; needs node >= 20. Nothing else depends on it.
llama-cpp:
	npm install --prefix tools/llama-cpp --no-audit --no-fund --ignore-scripts

clean:
	rm -rf $(VENV) runs tools/llama-cpp/node_modules
