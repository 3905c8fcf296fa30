# The README's two commands on a fresh machine: `make quickstart` (the main job) and
# `make test`. Each sets up .venv first (torch pinned in constraints.txt, the extension
# built by CMake); re-running only rebuilds what changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.yilightning-installed
BUILD_INPUTS := $(shell find csrc cmake -type f) CMakeLists.txt setup.py pyproject.toml constraints.txt

.PHONY: setup quickstart test bench doctor clean

setup: $(STAMP)

# nvidia-cutlass with --no-deps: only its C++ headers are used; its Python deps are heavy.
# --no-build-isolation: compile against the torch installed here (see pyproject.toml).
$(STAMP): $(BUILD_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch cmake ninja setuptools wheel
	$(BIN)/pip install -q --no-deps -c constraints.txt nvidia-cutlass
	$(BIN)/pip install -q --no-build-isolation -c constraints.txt -e '.[test]'
	touch $@

quickstart: setup
	$(BIN)/yilightning quickstart

test: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m pytest bench --benchmark-only $(PYTEST_ARGS)

doctor: setup
	$(BIN)/yilightning doctor

clean:
	rm -rf build $(STAMP) yilightning/_C*.so
