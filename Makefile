# gatewaylab: every target that runs Python depends on .venv, which builds itself.
# `make help` lists the targets. Only Python >= 3.11, make and apt are assumed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ERA    ?= asgi
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint typecheck check-notebooks bench bench-smoke serve clean

help: ## list every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.%-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is rebuilt only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "gatewaylab needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its extras (idempotent)

demo: $(STAMP) ## the main job: the four eras side by side on the shared app
	$(PY) -m servers demo $(ARGS)

serve: $(STAMP) ## run one era's server: make serve ERA=wsgi ARGS=--trace
	$(PY) -m servers $(ERA) $(ARGS)

test: $(STAMP) lint ## the whole suite: lint, types, then pytest
	$(PY) -m pytest $(ARGS)

lint: $(STAMP) ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(STAMP) ## wrk against our servers and their peers, A B A B, medians and ratios
	$(PY) -m loadtests.bench $(ARGS)

clean: ## remove the venv, caches and results
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache results build *.egg-info
