# Every target sets up what it needs: a fresh clone needs nothing but python3 (and root or sudo
# for the Debian packages the tests run for real).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-packages demo test lint typecheck unit crds bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

system-packages:
	./scripts/install-system-packages.sh

demo: setup
	$(BIN)/servicegraph check manifests/examples/online-boutique
	$(BIN)/python scripts/demo.py

lint: setup
	$(BIN)/ruff check operator tests bench scripts
	$(BIN)/ruff format --check operator tests bench scripts

typecheck: setup
	$(BIN)/mypy operator/servicegraph

unit: setup
	$(BIN)/python -m pytest tests/unit -q

test: setup system-packages lint typecheck
	$(BIN)/python -m pytest -q -n 2

crds: setup
	$(BIN)/servicegraph crds --write crds

bench: setup
	$(BIN)/python bench/graph_bench.py
	$(BIN)/python bench/operator_bench.py --sizes 1000,5000,10000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
